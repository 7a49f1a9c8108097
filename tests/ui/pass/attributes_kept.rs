/// Documented, with lints: the attributes stay on the generated function.
#[graceful::main]
#[allow(unused_variables)]
async fn main() {
    let unused = 1;
}
