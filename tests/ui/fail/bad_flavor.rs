#[graceful::main(flavor = "fast")]
async fn main() {}
