#[graceful::main(blocking_threads = 0)]
async fn main() {}
