#[graceful::main(signals = ["SIGTERM", "SIGHUP"], upgrade_signal = "SIGHUP")]
async fn main() {}
