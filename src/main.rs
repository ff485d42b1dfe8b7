use clap::Parser;

fn main() {
    dotenvy::dotenv().ok();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(message) = cobro::cli::run(cobro::cli::Cli::parse()) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
