#[graceful::main(grace = "10 parsecs")]
async fn main() {}
