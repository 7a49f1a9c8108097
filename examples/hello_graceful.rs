//! Start-up cost, with `hello_tokio`: the whole process of a `#[graceful::main]` hello world.
//! See BENCHMARKS.md for the `hyperfine` command that compares the two.
#[graceful::main]
async fn main() {
    println!("hello");
}
