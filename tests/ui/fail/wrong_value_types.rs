#[graceful::main(worker_threads = "4", run_forever = 1, signals = "SIGINT", signal_exit_code = 300)]
async fn main() {}
