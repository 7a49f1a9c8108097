#[graceful::main]
async fn main() -> Result<(), std::io::Error> {
    // `?` needs the declared error type to reach the body's async block.
    let value: u8 = "7".parse().map_err(std::io::Error::other)?;
    assert_eq!(value, 7);
    Ok(())
}
