// A bad option must not hide the body from the compiler: its own error is reported too.
#[graceful::main(flavor = "fast")]
async fn main() {
    let x: u32 = "not a number";
}
