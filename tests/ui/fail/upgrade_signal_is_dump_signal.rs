#[graceful::main(dump_signal = "SIGUSR1", upgrade_signal = "SIGUSR1")]
async fn main() {}
