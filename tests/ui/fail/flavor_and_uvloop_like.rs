#[graceful::main(flavor = "multi_thread", uvloop_like = "current_thread")]
async fn main() {}
