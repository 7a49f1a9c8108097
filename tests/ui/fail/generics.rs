#[graceful::main]
async fn main<T>() {}
