#[graceful::main]
async fn main(args: Vec<String>) {}
