//! Who may do what: a member's [`Role`], a restricted key's permissions, and the one check
//! every authenticated request passes ([`Grants::allows`]) before its handler runs.
//!
//! A request needs [`Access`] to one [`Resource`], read for `GET`, write for anything else,
//! named by its route ([`needed`]): `/payments/{id}/refund/` is refunds, `/v1/accounts/` is
//! customers. A route that names no resource is refused to everyone (fail closed), so a new
//! route cannot be reachable before it is given a resource here.
//!
//! | role      | may                                                                 |
//! |-----------|---------------------------------------------------------------------|
//! | owner     | everything                                                          |
//! | admin     | everything, but removing or demoting an owner (checked by members) |
//! | developer | read and write all but members and keys; read members               |
//! | viewer    | read all but keys                                                   |
//!
//! Keys act for a workspace, not a person: a full secret key (`sk_…`) may do everything a
//! developer may except read members; a restricted key (`rk_…`) only what its permissions
//! list. No key reaches members or keys: only people manage people and credentials.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use utoipa::ToSchema;

use crate::text_enum::text_enum;

text_enum! {
    /// A member's role in a workspace.
    Role {
        Owner = "owner",
        Admin = "admin",
        Developer = "developer",
        Viewer = "viewer",
    }
}

text_enum! {
    /// What a request reads or changes.
    Resource {
        Payments = "payments",
        Sources = "sources",
        Customers = "customers",
        Invoices = "invoices",
        Refunds = "refunds",
        Events = "events",
        Webhooks = "webhooks",
        Integrations = "integrations",
        Members = "members",
        Keys = "keys",
    }
}

impl Resource {
    /// What a restricted key may be given (everything but members and keys).
    pub const FOR_KEYS: [Resource; 8] = [
        Resource::Payments,
        Resource::Sources,
        Resource::Customers,
        Resource::Invoices,
        Resource::Refunds,
        Resource::Events,
        Resource::Webhooks,
        Resource::Integrations,
    ];
}

text_enum! {
    /// Reading, or changing (which includes reading).
    Access {
        Read = "read",
        Write = "write",
    }
}

/// One permission of a restricted key: `payments:write`, `events:read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    pub resource: Resource,
    pub access: Access,
}

impl FromStr for Permission {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "\"{raw}\" is not a permission: write resource:read or resource:write, with a resource among {}.",
                Resource::FOR_KEYS.map(Resource::as_str).join(", ")
            )
        };
        let (resource, access) = raw.trim().split_once(':').ok_or_else(invalid)?;
        let resource = Resource::from_str(resource).map_err(|_| invalid())?;
        let access = Access::from_str(access).map_err(|_| invalid())?;
        if !Resource::FOR_KEYS.contains(&resource) {
            return Err(invalid());
        }
        Ok(Permission { resource, access })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource.as_str(), self.access.as_str())
    }
}

/// Parses a list of permissions (`payments:write,refunds:read`), keeping each resource once
/// with the most access asked for it, in a stable order.
pub fn parse_permissions<'a>(
    raw: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Permission>, String> {
    let mut permissions: Vec<Permission> = Vec::new();
    for item in raw {
        if item.trim().is_empty() {
            continue;
        }
        let permission: Permission = item.parse()?;
        match permissions
            .iter_mut()
            .find(|p| p.resource == permission.resource)
        {
            Some(p) if permission.access == Access::Write => p.access = Access::Write,
            Some(_) => {}
            None => permissions.push(permission),
        }
    }
    if permissions.is_empty() {
        return Err("A restricted key needs at least one permission.".into());
    }
    permissions.sort_by_key(|p| Resource::FOR_KEYS.iter().position(|r| *r == p.resource));
    Ok(permissions)
}

/// Read access to everything a key may be given.
pub fn read_only() -> Vec<Permission> {
    Resource::FOR_KEYS
        .map(|resource| Permission {
            resource,
            access: Access::Read,
        })
        .to_vec()
}

/// What a credential may do in the workspace it acts in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grants {
    Member(Role),
    /// A full secret key.
    Key,
    Restricted(Vec<Permission>),
}

impl Grants {
    pub fn allows(&self, resource: Resource, access: Access) -> bool {
        let people = matches!(resource, Resource::Members | Resource::Keys);
        match self {
            Grants::Member(Role::Owner | Role::Admin) => true,
            Grants::Member(Role::Developer) => match resource {
                Resource::Keys => false,
                Resource::Members => access == Access::Read,
                _ => true,
            },
            Grants::Member(Role::Viewer) => access == Access::Read && resource != Resource::Keys,
            Grants::Key => !people,
            Grants::Restricted(permissions) => {
                !people
                    && permissions.iter().any(|p| {
                        p.resource == resource
                            && (p.access == Access::Write || access == Access::Read)
                    })
            }
        }
    }
}

/// The resource and access a request needs, from its method and route template; None for a
/// route no one may reach with a token or key.
pub fn needed(method: &str, route: &str) -> Option<(Resource, Access)> {
    let access = if method == "GET" || method == "HEAD" {
        Access::Read
    } else {
        Access::Write
    };
    let path = route.strip_prefix("/v1").unwrap_or(route);
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let resource = match segments.next()? {
        "accounts" if route.starts_with("/v1/") => Resource::Customers,
        "payments" if segments.nth(1) == Some("refund") => Resource::Refunds,
        other => Resource::from_str(other).ok()?,
    };
    Some((resource, access))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_accesses() -> Vec<(Resource, Access)> {
        let resources = [
            Resource::Payments,
            Resource::Sources,
            Resource::Customers,
            Resource::Invoices,
            Resource::Refunds,
            Resource::Events,
            Resource::Webhooks,
            Resource::Integrations,
            Resource::Members,
            Resource::Keys,
        ];
        resources
            .into_iter()
            .flat_map(|r| [(r, Access::Read), (r, Access::Write)])
            .collect()
    }

    #[test]
    fn every_role_and_key_against_every_resource() {
        use Access::*;
        use Resource::*;
        for (resource, access) in all_accesses() {
            let people = matches!(resource, Members | Keys);
            let expect = [
                (Grants::Member(Role::Owner), true),
                (Grants::Member(Role::Admin), true),
                (
                    Grants::Member(Role::Developer),
                    resource != Keys && (resource != Members || access == Read),
                ),
                (
                    Grants::Member(Role::Viewer),
                    access == Read && resource != Keys,
                ),
                (Grants::Key, !people),
                (Grants::Restricted(read_only()), !people && access == Read),
                (
                    Grants::Restricted(
                        parse_permissions(["payments:write", "refunds:read"]).unwrap(),
                    ),
                    (resource == Payments) || (resource == Refunds && access == Read),
                ),
            ];
            for (grants, allowed) in expect {
                assert_eq!(
                    grants.allows(resource, access),
                    allowed,
                    "{grants:?} {resource:?} {access:?}"
                );
            }
        }
    }

    #[test]
    fn routes_name_their_resource() {
        use Access::*;
        use Resource::*;
        let cases = [
            ("GET", "/payments/", Some((Payments, Read))),
            ("POST", "/payments/{id}/authorize/", Some((Payments, Write))),
            ("POST", "/payments/{id}/refund/", Some((Refunds, Write))),
            ("PATCH", "/refunds/{id}/", Some((Refunds, Write))),
            ("HEAD", "/events/", Some((Events, Read))),
            ("DELETE", "/keys/{id}/", Some((Keys, Write))),
            ("GET", "/members/", Some((Members, Read))),
            ("POST", "/v1/accounts/", Some((Customers, Write))),
            ("GET", "/v1/payments/{id}/", Some((Payments, Read))),
            ("GET", "/accounts/", None),
            ("GET", "/health/", None),
            ("GET", "/", None),
        ];
        for (method, route, expected) in cases {
            assert_eq!(needed(method, route), expected, "{method} {route}");
        }
    }

    #[test]
    fn permissions_parse_strictly_and_keep_the_most_access() {
        let parsed =
            parse_permissions(["refunds:read", "payments:read", "refunds:write", ""]).unwrap();
        assert_eq!(
            parsed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["payments:read", "refunds:write"]
        );
        for bad in [
            "payments",
            "payments:delete",
            "members:read",
            "keys:write",
            "nope:read",
        ] {
            assert!(parse_permissions([bad]).is_err(), "{bad}");
        }
        assert!(parse_permissions([""]).is_err());
    }
}
