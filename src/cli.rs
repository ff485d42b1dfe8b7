//! The `cobro` command line. Every command reads DATABASE_URL (default: the SQLite file
//! `cobro.db`) and runs pending migrations before it acts.

use std::net::TcpListener;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::accounts;
use crate::config::Settings;
use crate::db::{DatabaseUrl, Db, DbConnection, PooledConnection};
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
    /// Give a user access to a workspace.
    AddMember { workspace_id: String, email: String },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create a workspace secret key for one mode.
    Create {
        workspace_id: String,
        #[arg(long, value_enum)]
        mode: Mode,
        #[arg(long)]
        json: bool,
    },
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
    operator(&mut conn, command).map_err(|e| e.to_string())
}

fn operator(conn: &mut PooledConnection, command: Command) -> Result<(), accounts::AccountError> {
    let conn: &mut DbConnection = conn;
    match command {
        Command::Serve { .. } | Command::Worker | Command::Secrets { .. } => {
            unreachable!("handled by run")
        }
        Command::Migrate => println!("migrations are up to date"),
        Command::User {
            command: UserCommand::Create { email, json },
        } => {
            let token = accounts::create_user(conn, &email)?;
            print_token(&email, &token, json);
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
        Command::Workspace {
            command:
                WorkspaceCommand::AddMember {
                    workspace_id,
                    email,
                },
        } => {
            accounts::add_member(conn, &workspace_id, &email)?;
            println!(
                "{} is a member of {workspace_id}",
                email.trim().to_lowercase()
            );
        }
        Command::Key {
            command:
                KeyCommand::Create {
                    workspace_id,
                    mode,
                    json,
                },
        } => {
            let test_mode = matches!(mode, Mode::Test);
            let key = accounts::create_key(conn, &workspace_id, test_mode)?;
            if json {
                let mode = if test_mode { "test" } else { "live" };
                println!(
                    "{}",
                    json!({ "key": key, "workspace": workspace_id, "mode": mode })
                );
            } else {
                println!("{key}");
            }
        }
    }
    Ok(())
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
            print_bootstrap(&first, &address.to_string());
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

fn print_bootstrap(first: &accounts::Bootstrap, address: &str) {
    println!(
        "\nThe database was empty, so cobro created a first user, workspace and API token.\n\
         They are shown once; keep the token somewhere safe.\n\n\
         \x20 email:     {}\n\x20 workspace: {}\n\x20 token:     {}\n\n\
         Try it:\n\n\
         \x20 curl -H 'Authorization: Token {}' -H 'x-simple-workspace: {}' http://{address}/payments/\n",
        first.email, first.workspace_id, first.token, first.token, first.workspace_id
    );
}
