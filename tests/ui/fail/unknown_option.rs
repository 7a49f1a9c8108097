#[graceful::main(grase = "10s")]
async fn main() {}
