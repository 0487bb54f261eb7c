//! The AFL entry point: runs the target named by `SHOAL_FUZZ_TARGET` (see
//! `shoal_fuzz::TARGETS`) on each input AFL gives it; `--seed DIR` writes
//! the seed corpus instead.
#![allow(clippy::expect_used)]

fn main() {
    // `shoal-fuzz --seed DIR` writes the seed corpus.
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir] = args.as_slice()
        && flag == "--seed"
    {
        for (i, (target, bytes)) in shoal_fuzz::seeds().into_iter().enumerate() {
            let at = std::path::Path::new(dir).join(target);
            std::fs::create_dir_all(&at).expect("creating the corpus directory");
            std::fs::write(at.join(format!("seed-{i}")), bytes).expect("writing a seed");
        }
        return;
    }
    let name = std::env::var("SHOAL_FUZZ_TARGET").unwrap_or_default();
    if !shoal_fuzz::TARGETS.contains(&name.as_str()) {
        eprintln!(
            "set SHOAL_FUZZ_TARGET to one of: {}",
            shoal_fuzz::TARGETS.join(", ")
        );
        std::process::exit(2);
    }
    afl::fuzz!(|data: &[u8]| {
        shoal_fuzz::run(&name, data);
    });
}
