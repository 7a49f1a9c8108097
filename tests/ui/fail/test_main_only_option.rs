#[graceful::test(signals = ["SIGINT"])]
async fn uses_signals() {}

fn main() {}
