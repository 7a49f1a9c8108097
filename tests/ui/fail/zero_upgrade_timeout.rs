#[graceful::main(upgrade_timeout = "0s")]
async fn main() {}
