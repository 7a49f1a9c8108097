#[graceful::main(upgrade_signal = "SIGTERM")]
async fn main() {}
