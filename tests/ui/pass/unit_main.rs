#[graceful::main]
async fn main() {}
