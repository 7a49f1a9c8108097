#[graceful::main(
    flavor = "multi_thread",
    worker_threads = 2,
    blocking_threads = 8,
    grace = "2s",
    signals = ["SIGINT", "SIGTERM", "SIGHUP", "CTRL_C"],
    run_forever = true,
    stop_on_panic = true,
    stop_on_error = true,
    signal_exit_code = 0,
    drain_delay = "10ms",
    dump_signal = "SIGUSR1",
    second_signal = "ignore",
    upgrade_signal = "SIGUSR2",
    upgrade_timeout = "30s",
    crate = "::graceful"
)]
async fn main() {
    // `run_forever`: returning alone would not end the program.
    graceful::shutdown();
}
