//! A logic pack's `rules.json`: parsed, then compiled against no tables
//! (every table reference must be refused, not looked up blindly).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(rules) = kernel::RuleSet::parse(data) {
        let pack = kernel::LogicPack {
            name: "fuzz".into(),
            version: "1.0.0".into(),
            cid: "fuzz".into(),
            rules,
        };
        let _ = kernel::Program::compile(&[pack], &kernel::Tables::new());
    }
});
