use clap::Parser;

fn main() -> std::process::ExitCode {
    lark_service::cli::run(lark_service::cli::Cli::parse())
}
