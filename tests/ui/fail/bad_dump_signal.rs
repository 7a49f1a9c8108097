#[graceful::main(dump_signal = "SIGINT")]
async fn main() {}
