#[graceful::main]
struct Main;

fn main() {}
