#[graceful::main(run_forever)]
async fn main() {}
