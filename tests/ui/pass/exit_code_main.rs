use std::process::ExitCode;

#[graceful::main]
async fn main() -> ExitCode {
    ExitCode::SUCCESS
}
