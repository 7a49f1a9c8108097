#[graceful::main(signals = ["SIGINT", "SIGWINCH"])]
async fn main() {}
