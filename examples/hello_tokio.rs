//! The baseline of `hello_graceful`: the same program under `#[tokio::main]`.
#[tokio::main]
async fn main() {
    println!("hello");
}
