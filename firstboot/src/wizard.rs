pub fn run(
    _ctx: &crate::cli::Context,
    _draft: Option<crate::answers::Answers>,
    _origin: Option<crate::source::Origin>,
) -> anyhow::Result<i32> {
    anyhow::bail!("todo")
}
