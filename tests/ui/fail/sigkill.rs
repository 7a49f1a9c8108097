#[graceful::main(signals = ["SIGINT", "SIGKILL"])]
async fn main() {}
