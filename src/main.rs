use clap::Parser;

fn main() {
    dotenvy::dotenv().ok();
    cobro::logging::init();
    if let Err(message) = cobro::cli::run(cobro::cli::Cli::parse()) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
