//! The `cobro` command line. Every command reads DATABASE_URL (default: the SQLite file
//! `cobro.db`) and runs pending migrations before it acts.

use std::net::TcpListener;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::accounts;
use crate::accounts::keys::{self, NewKey};
use crate::accounts::members::{self, Manager};
use crate::accounts::roles::{self, Role};
use crate::config::Settings;
use crate::db::{write_tx, DatabaseUrl, Db, DbConnection, PooledConnection};
use crate::error::ApiError;
use crate::startup;
use crate::webhooks::worker;

#[derive(Parser, Debug)]
#[command(
    name = "cobro",
    version,
    about = "A payments API compatible with Piriod's, on SQLite or PostgreSQL."
)]
pub struct Cli {
    /// A SQLite file path, or a postgres://… URL.
    #[arg(long, env = "DATABASE_URL", default_value = crate::config::DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API (migrates first; on an empty database, creates a first user).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "COBRO_BIND", default_value = crate::config::DEFAULT_BIND)]
        bind: String,
        /// Do not create a first user, workspace and token on an empty database.
        #[arg(long)]
        no_bootstrap: bool,
    },
    /// Run pending database migrations and exit.
    Migrate,
    /// Deliver webhooks, without serving HTTP (`cobro serve` also runs a worker; any
    /// number may run on one database).
    Worker,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage workspaces.
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// Manage workspace secret keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Manage the server's secret key, which seals provider credentials.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Seal every provider credential again under the current key. With COBRO_SECRET_KEY
    /// ("new,old"): under its first key. With the SQLite key file: under a new key, which
    /// then replaces the file's.
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user and print their API token.
    Create {
        email: String,
        #[arg(long)]
        json: bool,
        /// Also set a console password: asked at a terminal, else read from stdin's first
        /// line.
        #[arg(long)]
        password: bool,
    },
    /// Set a user's console password (asked at a terminal, else read from stdin's first
    /// line); signs them out of every console session.
    SetPassword { email: String },
    /// Print a one-time console sign-in link for a user (valid 15 minutes, once).
    SignInLink {
        email: String,
        /// The console's public address (default: COBRO_PUBLIC_URL, else COBRO_BIND's).
        #[arg(long)]
        base_url: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Give a user a new API token; the old one stops working at once.
    Rotate {
        email: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// Create a workspace owned by an existing user.
    Create {
        name: String,
        #[arg(long)]
        owner: String,
        #[arg(long)]
        json: bool,
    },
    /// Give an existing user access to a workspace, with a role.
    AddMember {
        workspace_id: String,
        email: String,
        #[arg(long, value_enum, default_value = "developer")]
        role: RoleArg,
    },
    /// Give a member another role (a workspace always keeps an owner).
    SetRole {
        workspace_id: String,
        email: String,
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Take a user out of a workspace (never its last owner).
    RemoveMember { workspace_id: String, email: String },
    /// List a workspace's members and their roles.
    Members {
        workspace_id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Owner,
    Admin,
    Developer,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Owner => Role::Owner,
            RoleArg::Admin => Role::Admin,
            RoleArg::Developer => Role::Developer,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create a key for one mode: a full secret key (`sk_…`), or a restricted one (`rk_…`)
    /// with --read-only or --allow payments:write,refunds:read.
    Create {
        workspace_id: String,
        #[arg(long, value_enum)]
        mode: Mode,
        /// A restricted key that may read everything a key may, and change nothing.
        #[arg(long, conflicts_with = "allow")]
        read_only: bool,
        /// A restricted key with these permissions (resource:read or resource:write).
        #[arg(long, value_delimiter = ',')]
        allow: Vec<String>,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List a workspace's keys in one mode (prefix, permissions, created, last used).
    List {
        workspace_id: String,
        #[arg(long, value_enum)]
        mode: Mode,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id: it stops working at once, on every server.
    Revoke { workspace_id: String, key_id: i64 },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    Test,
    Live,
}

/// Runs a command; the error is one line for the terminal.
pub fn run(cli: Cli) -> Result<(), String> {
    let mut settings = Settings::from_env()?;
    settings.database_url = cli.database_url;
    let url = DatabaseUrl::parse(&settings.database_url)?;
    let command = cli.command.unwrap_or(Command::Serve {
        bind: settings.bind.clone(),
        no_bootstrap: false,
    });
    if let Command::Serve { bind, no_bootstrap } = command {
        return serve(settings, &url, &bind, no_bootstrap);
    }
    if let Command::Worker = command {
        return work(settings, &url);
    }
    if let Command::Secrets {
        command: SecretsCommand::Rotate,
    } = command
    {
        return rotate_secrets(&settings, &url);
    }
    let db = Db::connect(&url, 1, &settings.sqlite_synchronous)?;
    let mut conn = db.pool.get().map_err(|e| e.to_string())?;
    operator(&mut conn, command, &settings).map_err(|e| e.to_string())
}

fn operator(
    conn: &mut PooledConnection,
    command: Command,
    settings: &Settings,
) -> Result<(), accounts::AccountError> {
    let conn: &mut DbConnection = conn;
    match command {
        Command::Serve { .. } | Command::Worker | Command::Secrets { .. } => {
            unreachable!("handled by run")
        }
        Command::Migrate => println!("migrations are up to date"),
        Command::User {
            command:
                UserCommand::Create {
                    email,
                    json,
                    password,
                },
        } => {
            let hashed = password.then(read_password).transpose()?;
            let token = accounts::create_user(conn, &email)?;
            if let Some(hashed) = hashed {
                accounts::passwords::set(conn, &email, &hashed)?;
            }
            print_token(&email, &token, json);
        }
        Command::User {
            command: UserCommand::SetPassword { email },
        } => {
            accounts::user_id(conn, &email)?;
            let hashed = read_password()?;
            accounts::passwords::set(conn, &email, &hashed)?;
            println!(
                "password set for {}; their console sessions have ended",
                email.trim().to_lowercase()
            );
        }
        Command::User {
            command: UserCommand::SignInLink { email, base_url },
        } => {
            let secret = accounts::sessions::new_link(conn, &email)?;
            let base = base_url.unwrap_or_else(|| settings_base_url(settings));
            println!("{}", sign_in_url(&base, &secret));
        }
        Command::Token {
            command: TokenCommand::Rotate { email, json },
        } => {
            let token = accounts::rotate_token(conn, &email)?;
            print_token(&email, &token, json);
        }
        Command::Workspace {
            command: WorkspaceCommand::Create { name, owner, json },
        } => {
            let id = accounts::create_workspace(conn, &name, &owner)?;
            if json {
                println!("{}", json!({ "id": id, "name": name.trim() }));
            } else {
                println!("{id}");
            }
        }
        Command::Workspace { command } => workspace(conn, command)?,
        Command::Key { command } => key(conn, command)?,
    }
    Ok(())
}

/// An API error as one line for the terminal (a field's message with the field's name).
fn said(err: ApiError) -> accounts::AccountError {
    let message = match &err {
        ApiError::Forbidden => "only an owner may do that".to_string(),
        ApiError::NotFound => "not found".to_string(),
        other => other.for_people(),
    };
    accounts::AccountError::Refused(message)
}

fn workspace(
    conn: &mut DbConnection,
    command: WorkspaceCommand,
) -> Result<(), accounts::AccountError> {
    let member_of = |conn: &mut DbConnection, workspace_id: &str, email: &str| {
        let scope = accounts::operator_scope(conn, workspace_id, false)?;
        let user = accounts::user_id(conn, email)?;
        Ok::<_, accounts::AccountError>((scope, user))
    };
    match command {
        WorkspaceCommand::Create { name, owner, json } => {
            let id = accounts::create_workspace(conn, &name, &owner)?;
            if json {
                println!("{}", json!({ "id": id, "name": name.trim() }));
            } else {
                println!("{id}");
            }
        }
        WorkspaceCommand::AddMember {
            workspace_id,
            email,
            role,
        } => {
            let scope = accounts::operator_scope(conn, &workspace_id, false)?;
            let added = write_tx(conn, |conn| {
                members::add(conn, &scope, Manager::Operator, &email, role.into())
            });
            match added {
                Ok(member) => println!(
                    "{} is a member of {workspace_id}, as {}",
                    member.email,
                    member.role.as_str()
                ),
                // Adding a member twice is not an error (scripts may run again).
                Err(ApiError::Validation(e))
                    if e.iter().any(|(_, m)| m.contains("already a member")) =>
                {
                    println!(
                        "{} is already a member of {workspace_id}",
                        email.trim().to_lowercase()
                    )
                }
                Err(err) => return Err(said(err)),
            }
        }
        WorkspaceCommand::SetRole {
            workspace_id,
            email,
            role,
        } => {
            let (scope, user) = member_of(conn, &workspace_id, &email)?;
            let member = write_tx(conn, |conn| {
                members::set_role(conn, &scope, Manager::Operator, user, role.into())
            })
            .map_err(said)?;
            println!(
                "{} is {} of {workspace_id}",
                member.email,
                member.role.as_str()
            );
        }
        WorkspaceCommand::RemoveMember {
            workspace_id,
            email,
        } => {
            let (scope, user) = member_of(conn, &workspace_id, &email)?;
            let member = write_tx(conn, |conn| {
                members::remove(conn, &scope, Manager::Operator, user)
            })
            .map_err(said)?;
            println!("{} is no longer a member of {workspace_id}", member.email);
        }
        WorkspaceCommand::Members { workspace_id, json } => {
            let scope = accounts::operator_scope(conn, &workspace_id, false)?;
            for member in members::list(conn, &scope).map_err(said)? {
                if json {
                    println!("{}", serde_json::to_string(&member).unwrap_or_default());
                } else {
                    println!(
                        "{}\t{}\t{}",
                        member.user,
                        member.role.as_str(),
                        member.email
                    );
                }
            }
        }
    }
    Ok(())
}

fn key(conn: &mut DbConnection, command: KeyCommand) -> Result<(), accounts::AccountError> {
    match command {
        KeyCommand::Create {
            workspace_id,
            mode,
            read_only,
            allow,
            name,
            json,
        } => {
            let test_mode = matches!(mode, Mode::Test);
            let scope = accounts::operator_scope(conn, &workspace_id, test_mode)?;
            let permissions = if read_only {
                Some(roles::read_only())
            } else if allow.is_empty() {
                None
            } else {
                let parsed = roles::parse_permissions(allow.iter().map(String::as_str));
                Some(parsed.map_err(accounts::AccountError::Refused)?)
            };
            let new = NewKey { permissions, name };
            let view = write_tx(conn, |conn| keys::create(conn, &scope, &new)).map_err(said)?;
            let secret = view.secret.clone().unwrap_or_default();
            if json {
                let mode = if test_mode { "test" } else { "live" };
                println!(
                    "{}",
                    json!({ "key": secret, "id": view.id, "workspace": workspace_id, "mode": mode, "permissions": view.permissions })
                );
            } else {
                println!("{secret}");
            }
        }
        KeyCommand::List {
            workspace_id,
            mode,
            json,
        } => {
            let scope = accounts::operator_scope(conn, &workspace_id, matches!(mode, Mode::Test))?;
            for key in keys::list(conn, &scope).map_err(said)? {
                if json {
                    println!("{}", serde_json::to_string(&key).unwrap_or_default());
                } else {
                    let permissions = key
                        .permissions
                        .as_ref()
                        .map_or("all".to_string(), |p| p.join(","));
                    let state = key
                        .revoked
                        .as_ref()
                        .map_or("active".to_string(), |at| format!("revoked {at}"));
                    let used = key.last_used.as_deref().unwrap_or("never used");
                    println!(
                        "{}\t{}\t{permissions}\t{}\t{used}\t{state}",
                        key.id, key.prefix, key.created
                    );
                }
            }
        }
        KeyCommand::Revoke {
            workspace_id,
            key_id,
        } => {
            // A key id is the key's alone; it is looked for in both modes.
            let mut revoked = None;
            for test_mode in [false, true] {
                let scope = accounts::operator_scope(conn, &workspace_id, test_mode)?;
                match write_tx(conn, |conn| keys::revoke(conn, &scope, key_id)) {
                    Ok(view) => {
                        revoked = Some(view);
                        break;
                    }
                    Err(ApiError::NotFound) => {}
                    Err(err) => return Err(said(err)),
                }
            }
            let view = revoked.ok_or_else(|| {
                accounts::AccountError::Refused(format!("no key {key_id} in {workspace_id}"))
            })?;
            println!("revoked {} ({})", view.prefix, view.id);
        }
    }
    Ok(())
}

/// A new password, hashed: asked twice at a terminal (not echoed), else stdin's first line.
fn read_password() -> Result<String, accounts::AccountError> {
    use std::io::IsTerminal;
    let refused = |e: std::io::Error| {
        accounts::AccountError::Refused(format!("cannot read the password: {e}"))
    };
    let raw = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New password: ").map_err(refused)?;
        let again = rpassword::prompt_password("Again: ").map_err(refused)?;
        if first != again {
            return Err(accounts::AccountError::Refused(
                "the two passwords differ".into(),
            ));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(refused)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    let password = accounts::passwords::Password::parse(&raw)?;
    Ok(accounts::passwords::hash(&password))
}

/// Where the console is, for links printed at the terminal.
fn settings_base_url(settings: &Settings) -> String {
    settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.bind))
}

/// A sign-in link's address.
pub fn sign_in_url(base: &str, secret: &str) -> String {
    format!("{}/dashboard/sign-in/{secret}/", base.trim_end_matches('/'))
}

fn print_token(email: &str, token: &str, json: bool) {
    if json {
        println!(
            "{}",
            json!({ "email": email.trim().to_lowercase(), "token": token })
        );
    } else {
        println!("{token}");
    }
}

fn serve(
    settings: Settings,
    url: &DatabaseUrl,
    bind: &str,
    no_bootstrap: bool,
) -> Result<(), String> {
    let db = Db::connect(url, settings.pool_size, &settings.sqlite_synchronous)?;
    // A wrong key fails now, with its reason, rather than when a credential is needed.
    startup::keyring(&settings).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(bind).map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    if !no_bootstrap {
        let mut conn = db.pool.get().map_err(|e| e.to_string())?;
        if let Some(first) = accounts::bootstrap(&mut conn).map_err(|e| e.to_string())? {
            let base = settings
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{address}"));
            print_bootstrap(&first, &address.to_string(), &base);
        }
    }
    log::info!(
        "cobro listening on http://{address} ({} database)",
        db.backend.name()
    );
    let worker = settings
        .webhook_worker
        .then(|| worker::spawn(db.clone(), (&settings).into()));
    actix_web::rt::System::new()
        .block_on(async move { startup::serve(&settings, db, listener, true)?.await })
        .map_err(|e| format!("server error: {e}"))?;
    if let Some(worker) = worker {
        worker.stop();
    }
    Ok(())
}

/// `cobro worker`: delivers webhooks until SIGTERM or SIGINT, then lets the sends in flight
/// finish.
fn work(settings: Settings, url: &DatabaseUrl) -> Result<(), String> {
    // No requests here: the worker uses the pool's reserved connections.
    let db = Db::connect(url, 1, &settings.sqlite_synchronous)?;
    log::info!("delivering webhooks from {}", db.backend.name());
    let keyring = std::sync::Arc::new(startup::keyring(&settings).map_err(|e| e.to_string())?);
    crate::gateways::stripe::configure(&settings.stripe_api_base, &settings.stripe_js_url);
    let base_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| "http://localhost".into());
    let reconciler = settings.reconciler.then(|| {
        let settings = startup::reconciler_settings(&settings, base_url);
        crate::payments::reconciler::spawn(db.clone(), keyring, settings)
    });
    let running = worker::spawn(db, (&settings).into());
    actix_web::rt::System::new().block_on(async {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        std::future::poll_fn(|cx| {
            if terminate.poll_recv(cx).is_ready() || interrupt.poll_recv(cx).is_ready() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        Ok::<(), String>(())
    })?;
    log::info!("stopping: finishing the deliveries in flight");
    running.stop();
    if let Some(reconciler) = reconciler {
        reconciler.stop();
    }
    Ok(())
}

/// `cobro secrets rotate`: every integration's credentials sealed under the current key.
/// With the SQLite key file, a new key is made and written first beside the old ones (so
/// that an interrupted rotation loses nothing), and alone once all is sealed under it.
fn rotate_secrets(settings: &Settings, url: &DatabaseUrl) -> Result<(), String> {
    use crate::secrets::{self, Keyring};
    let db = Db::connect(url, 1, &settings.sqlite_synchronous)?;
    let mut conn = db.pool.get().map_err(|e| e.to_string())?;
    let reseal = |conn: &mut DbConnection, keyring: &Keyring| {
        crate::integrations::operations::reseal_all(conn, keyring).map_err(|e| e.to_string())
    };
    if !settings.secret_keys.0.is_empty() {
        let keyring = Keyring::parse(&settings.secret_keys.0, "COBRO_SECRET_KEY")?;
        let (resealed, already) = reseal(&mut conn, &keyring)?;
        let current = keyring.current().unwrap_or_default();
        println!("sealed {resealed} integrations anew under key {current} ({already} already were); the other keys of COBRO_SECRET_KEY may now go");
        return Ok(());
    }
    if url.backend != crate::db::Backend::Sqlite {
        return Err("COBRO_SECRET_KEY is not set: set it to \"new,old\" keys to rotate".into());
    }
    let path = secrets::key_file(&url.target);
    Keyring::load(&[], url)?; // makes the key file when there is none yet
    let old_keys: Vec<String> = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let new_key = secrets::new_key();
    let mut all = vec![new_key.clone()];
    all.extend(old_keys);
    secrets::write_key_file(&path, &all, false)?;
    let keyring = Keyring::parse(&all, &path.display().to_string())?;
    let (resealed, already) = reseal(&mut conn, &keyring)?;
    secrets::write_key_file(&path, &[new_key], false)?;
    let current = keyring.current().unwrap_or_default();
    println!(
        "sealed {resealed} integrations anew under key {current} ({already} already were); {} holds only it now: back it up",
        path.display()
    );
    Ok(())
}

fn print_bootstrap(first: &accounts::Bootstrap, address: &str, base: &str) {
    println!(
        "\nThe database was empty, so cobro created a first user, workspace and API token.\n\
         They are shown once; keep the token somewhere safe.\n\n\
         \x20 email:     {}\n\x20 workspace: {}\n\x20 token:     {}\n\n\
         The console: open this one-time sign-in link within 15 minutes, then set a password\n\
         with `cobro user set-password {}`:\n\n\
         \x20 {}\n\n\
         Try the API:\n\n\
         \x20 curl -H 'Authorization: Token {}' -H 'x-simple-workspace: {}' http://{address}/payments/\n",
        first.email,
        first.workspace_id,
        first.token,
        first.email,
        sign_in_url(base, &first.sign_in),
        first.token,
        first.workspace_id
    );
}
