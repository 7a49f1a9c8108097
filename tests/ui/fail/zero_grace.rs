#[graceful::main(grace = "0s")]
async fn main() {}
