#[graceful::main(signals = ["SIGUSR1"], dump_signal = "SIGUSR1")]
async fn main() {}
