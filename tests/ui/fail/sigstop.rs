#[graceful::main(signals = ["SIGSTOP"])]
async fn main() {}
