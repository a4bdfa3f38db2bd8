//! The profiler's pure half: function symbols from ELF files (the
//! loader's and, at their run-time base, the plugins'), QEMU's `-d exec`
//! trace lines, and the per-function tally of a window.

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

/// Function address ranges, sorted by start.
#[derive(Debug, Default)]
pub struct Symbols {
    ranges: Vec<(u64, u64, String)>,
}

impl Symbols {
    /// Adds the function symbols of `elf`, moved by `base` (0 for the
    /// loader, which is linked where it runs; a plugin's load address).
    /// `tag` names the file in front of plugin symbols.
    pub fn add_elf(&mut self, elf: &[u8], base: u64, tag: &str) -> Result<(), String> {
        let file = object::File::parse(elf).map_err(|e| format!("not an ELF file: {e}"))?;
        // Assembly labels (`pvh_entry`) have no size: they are kept as
        // marks, and count up to the next symbol.
        let in_text = |s: &object::Symbol| {
            s.section_index().and_then(|i| file.section_by_index(i).ok()).is_some_and(|c| c.kind() == SectionKind::Text)
        };
        let wanted = |s: &object::Symbol| match s.kind() {
            SymbolKind::Text => true,
            SymbolKind::Label | SymbolKind::Unknown => s.size() == 0 && in_text(s),
            _ => false,
        };
        for s in file.symbols().filter(wanted) {
            let Ok(name) = s.name() else { continue };
            let name = demangle(name);
            let name = if tag.is_empty() { name } else { format!("{tag}: {name}") };
            self.ranges.push((base + s.address(), base + s.address() + s.size(), name));
        }
        self.ranges.sort_by_key(|r| r.0);
        for i in 0..self.ranges.len() {
            if self.ranges[i].1 == self.ranges[i].0 {
                self.ranges[i].1 =
                    self.ranges.get(i + 1).map_or(self.ranges[i].0 + 1, |next| next.0.max(self.ranges[i].0 + 1));
            }
        }
        Ok(())
    }

    /// The function holding `pc`.
    pub fn lookup(&self, pc: u64) -> Option<&str> {
        let i = self.ranges.partition_point(|r| r.0 <= pc).checked_sub(1)?;
        let (start, end, name) = &self.ranges[i];
        (*start <= pc && pc < *end).then_some(name.as_str())
    }

    /// The start of the function named exactly `name`.
    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.ranges.iter().find(|r| r.2 == name).map(|r| r.0)
    }
}

/// A legacy Rust symbol (`_ZN6loader5timer9calibrate17h<hash>E`) as
/// `loader::timer::calibrate`; other names (v0 `_R...`, C) are kept as
/// they are, which still tells functions apart.
pub fn demangle(name: &str) -> String {
    // LLVM's `.llvm.<n>` suffix (a function made local by LTO) is no part
    // of the Rust name.
    let bare = name.split_once(".llvm.").map_or(name, |(b, _)| b);
    let Some(mut rest) = bare.strip_prefix("_ZN") else { return name.to_string() };
    let mut parts = Vec::new();
    while let Some(digits) = rest.find(|c: char| !c.is_ascii_digit()).filter(|&n| n > 0) {
        let Ok(len) = rest[..digits].parse::<usize>() else { break };
        let Some(part) = rest.get(digits..digits + len) else { return name.to_string() };
        parts.push(part);
        rest = &rest[digits + len..];
    }
    if rest != "E" || parts.is_empty() {
        return name.to_string();
    }
    if parts.last().is_some_and(|h| h.len() == 17 && h.starts_with('h')) {
        parts.pop();
    }
    // A part starting with an escape (`_$LT$`) carries a `_` so that it
    // does not start with `$`; the name has none.
    let parts: Vec<&str> =
        parts.iter().map(|p| p.strip_prefix('_').filter(|r| r.starts_with('$')).unwrap_or(p)).collect();
    let joined = parts.join("::");
    let escapes = [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$u20$", " "),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("$RF$", "&"),
        ("$C$", ","),
        ("..", "::"),
    ];
    escapes.iter().fold(joined, |s, (from, to)| s.replace(from, to))
}

/// The guest PC of a QEMU `-d exec` line:
/// `Trace 0: 0x7f.. [ffff0000/00000000fffffff0/00000040/ff022201] `.
pub fn trace_pc(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("Trace ")?;
    let fields = &rest[rest.find('[')? + 1..];
    let pc = fields.split('/').nth(1)?;
    u64::from_str_radix(pc, 16).ok()
}

/// Counts executed instructions per function between two marks: the
/// window opens when `start` is executed (or at once if `None`: from
/// reset) and closes when `end` is.
#[derive(Debug)]
pub struct Tally {
    start: Option<u64>,
    end: u64,
    open: bool,
    closed: bool,
    pub total: u64,
    by_pc: HashMap<u64, u64>,
}

impl Tally {
    pub fn new(start: Option<u64>, end: u64) -> Tally {
        Tally { start, end, open: start.is_none(), closed: false, total: 0, by_pc: HashMap::new() }
    }

    /// Takes one executed instruction (one-insn-per-tb: one trace line).
    pub fn step(&mut self, pc: u64) {
        if self.closed {
            return;
        }
        if !self.open && Some(pc) == self.start {
            self.open = true;
        }
        if self.open && pc == self.end {
            self.closed = true;
            return;
        }
        if self.open {
            self.total += 1;
            *self.by_pc.entry(pc).or_default() += 1;
        }
    }

    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Per function, most first; PCs outside every symbol fall under
    /// `?` with their 4 KiB page, so firmware and stubs still show.
    pub fn by_function(&self, symbols: &Symbols) -> Vec<(String, u64)> {
        let mut sums: HashMap<String, u64> = HashMap::new();
        for (pc, n) in &self.by_pc {
            let name = symbols.lookup(*pc).map_or_else(|| format!("? {:#x}", pc & !0xfff), str::to_string);
            *sums.entry(name).or_default() += n;
        }
        let mut rows: Vec<(String, u64)> = sums.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows
    }
}

/// `plugin counter-plugin 1.0.0 loaded at 0x2223000 (40 KiB)` lines of a
/// serial log, as (name, version, base).
pub fn plugin_bases(serial: &str) -> Vec<(String, String, u64)> {
    serial
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("plugin ")? + "plugin ".len()..];
            let mut words = rest.split_whitespace();
            let (name, version) = (words.next()?, words.next()?);
            (words.next()? == "loaded" && words.next()? == "at").then_some(())?;
            let base = u64::from_str_radix(words.next()?.strip_prefix("0x")?, 16).ok()?;
            Some((name.to_string(), version.to_string(), base))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names_are_demangled() {
        assert_eq!(demangle("_ZN6loader5timer9calibrate17h51db01dfa612bc98E"), "loader::timer::calibrate");
        assert_eq!(
            demangle("_ZN4core3ptr49drop_in_place$LT$loader..plugin..store..Entry$GT$17h5c74e06138ffe173E"),
            "core::ptr::drop_in_place<loader::plugin::store::Entry>"
        );
        assert_eq!(
            demangle("_ZN6loader12kernel_entry28_$u7b$$u7b$closure$u7d$$u7d$17h4d5bb8692836c73bE.llvm.82676"),
            "loader::kernel_entry::{{closure}}"
        );
        assert_eq!(
            demangle(
                "_ZN71_$LT$loader_core..power..exit..Status$u20$as$u20$core..fmt..Display$GT$3fmt17hf9d92c298de6a142E"
            ),
            "<loader_core::power::exit::Status as core::fmt::Display>::fmt"
        );
        assert_eq!(demangle("_RNvNtCs1_4core3fmt5write"), "_RNvNtCs1_4core3fmt5write");
        assert_eq!(demangle("memcpy"), "memcpy");
        assert_eq!(demangle("_ZN99toolong"), "_ZN99toolong");
    }

    #[test]
    fn trace_lines_give_the_pc() {
        assert_eq!(
            trace_pc("Trace 0: 0x7fda38000100 [ffff0000/00000000fffffff0/00000040/ff022201] "),
            Some(0xfffffff0)
        );
        assert_eq!(trace_pc("Trace 1: 0x7f [00000000/0000000000100021/00000040/ff022201] x"), Some(0x100021));
        assert_eq!(trace_pc("qemu-system-x86_64: warning"), None);
    }

    #[test]
    fn the_window_counts_between_its_marks() {
        let mut t = Tally::new(Some(10), 20);
        for pc in [1, 2, 10, 11, 11, 12, 20, 11, 11] {
            t.step(pc);
        }
        assert!(t.closed());
        assert_eq!(t.total, 4, "from the start mark up to, not including, the end mark");
        let symbols = Symbols { ranges: vec![(10, 12, "a".into()), (12, 13, "b".into())] };
        assert_eq!(symbols.lookup(11), Some("a"));
        assert_eq!(symbols.lookup(13), None);
        assert_eq!(symbols.address_of("b"), Some(12));
        assert_eq!(t.by_function(&symbols), [("a".to_string(), 3), ("b".to_string(), 1)]);
        let mut from_reset = Tally::new(None, 5);
        [0x1000, 0x1001, 5].into_iter().for_each(|pc| from_reset.step(pc));
        assert_eq!(from_reset.by_function(&Symbols::default()), [("? 0x1000".to_string(), 2)]);
        let mut never = Tally::new(Some(7), 5);
        [5, 6].into_iter().for_each(|pc| never.step(pc));
        assert!(!never.closed() && never.total == 0);
    }

    #[test]
    fn plugin_bases_from_the_log() {
        let serial = "[ 0.1 0 INFO loader::plugin::image] plugin counter-plugin 1.0.0 loaded at 0x2223000 (40 KiB)\n\
                      plugin x 1 unloaded\n";
        assert_eq!(plugin_bases(serial), [("counter-plugin".to_string(), "1.0.0".to_string(), 0x2223000)]);
    }

    #[test]
    fn the_loader_symbols_are_read() {
        let elf = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let mut s = Symbols::default();
        s.add_elf(&elf, 0, "").unwrap();
        assert!(s.ranges.len() > 100 && s.ranges.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(s.add_elf(b"not an elf", 0, "").is_err());
    }
}
