#[graceful::main(second_signal = "sometimes")]
async fn main() {}
