#[graceful::main(grace = "5s", drain_delay = "5s")]
async fn main() {}
