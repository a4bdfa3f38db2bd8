//! Interface resolution between plugins: which loaded plugin satisfies each
//! requirement (semver ranges, and a table at least as large as the one the
//! consumer was built against), and whether replacing a provider keeps every
//! consumer satisfied. Pure decisions; the registry applies them.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use semver::{Version, VersionReq};

/// An interface a loaded plugin provides.
#[derive(Clone, Debug)]
pub struct Offer<'a> {
    pub plugin: &'a str,
    pub interface: &'a str,
    pub version: &'a Version,
    /// Bytes of the provider's table.
    pub table_size: u64,
}

/// A requirement of a plugin being loaded.
#[derive(Clone, Debug)]
pub struct Need<'a> {
    pub interface: &'a str,
    pub range: &'a VersionReq,
    /// Bytes of the table type the consumer was built against: it may call
    /// any entry in them.
    pub table_size: u64,
}

/// Why `offer` does not meet `need`, in words; `None` if it does.
fn misfit(need: &Need, offer: &Offer) -> Option<String> {
    if !need.range.matches(offer.version) {
        Some(alloc::format!("{} {} from {}", offer.interface, offer.version, offer.plugin))
    } else if offer.table_size < need.table_size {
        Some(alloc::format!(
            "{} {} from {}, whose table has {} bytes where this plugin was built against {}: load a provider \
             with the larger table",
            offer.interface,
            offer.version,
            offer.plugin,
            offer.table_size,
            need.table_size
        ))
    } else {
        None
    }
}

/// Why one requirement cannot be met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmet {
    pub interface: String,
    pub range: String,
    /// Loaded providers of the interface that do not fit, each with why
    /// (the version out of range, or the table too small).
    pub found: Vec<String>,
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{} {}`", self.interface, self.range)?;
        if self.found.is_empty() {
            write!(f, " (nothing loaded provides it)")
        } else {
            write!(f, " (loaded: {})", self.found.join(", "))
        }
    }
}

/// For each need, the index of the offer that meets it (the highest
/// version in range); or every need that cannot be met.
pub fn resolve(needs: &[Need], offers: &[Offer]) -> Result<Vec<usize>, Vec<Unmet>> {
    let mut chosen = Vec::new();
    let mut unmet = Vec::new();
    for need in needs {
        let same = || offers.iter().enumerate().filter(|(_, o)| o.interface == need.interface);
        let best = same().filter(|(_, o)| misfit(need, o).is_none()).max_by(|(_, a), (_, b)| a.version.cmp(b.version));
        match best {
            Some((i, _)) => chosen.push(i),
            None => unmet.push(Unmet {
                interface: need.interface.into(),
                range: need.range.to_string(),
                found: same().filter_map(|(_, o)| misfit(need, o)).collect(),
            }),
        }
    }
    if unmet.is_empty() {
        Ok(chosen)
    } else {
        Err(unmet)
    }
}

/// A consumer that relies on an interface of the plugin being replaced.
#[derive(Clone, Debug)]
pub struct Use<'a> {
    pub consumer: &'a str,
    pub interface: &'a str,
    pub range: &'a VersionReq,
    /// Bytes of the table type the consumer was built against.
    pub table_size: u64,
}

/// A consumer whose range the replacement would break.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    pub consumer: String,
    pub interface: String,
    pub range: String,
    /// The replacement's version of the interface, if it still provides it.
    pub offered: Option<String>,
    /// The replacement's table size and the consumer's, when the version
    /// is in range but the table is too small.
    pub sizes: Option<(u64, u64)>,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.offered, self.sizes) {
            (Some(v), Some((offered, needed))) => write!(
                f,
                "{} needs `{} {}` built against a {needed}-byte table but the new version {v} has {offered} bytes",
                self.consumer, self.interface, self.range
            ),
            (Some(v), None) => write!(
                f,
                "{} needs `{} {}` but the new version provides {v}",
                self.consumer, self.interface, self.range
            ),
            (None, _) => write!(
                f,
                "{} needs `{} {}` which the new version does not provide",
                self.consumer, self.interface, self.range
            ),
        }
    }
}

/// Checks that `replacement` (interface, version, table size) still meets
/// every use.
pub fn check_replacement(uses: &[Use], replacement: &[(&str, &Version, u64)]) -> Result<(), Vec<Broken>> {
    let broken: Vec<Broken> = uses
        .iter()
        .filter_map(|u| {
            let offered = replacement.iter().find(|(i, _, _)| *i == u.interface).map(|&(_, v, size)| (v, size));
            let sizes = match offered {
                Some((v, size)) if u.range.matches(v) && size >= u.table_size => return None,
                Some((v, size)) if u.range.matches(v) => Some((size, u.table_size)),
                _ => None,
            };
            Some(Broken {
                consumer: u.consumer.into(),
                interface: u.interface.into(),
                range: u.range.to_string(),
                offered: offered.map(|(v, _)| v.to_string()),
                sizes,
            })
        })
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(broken)
    }
}

/// Splits a plugin store path `plugins/<name>-<version>.mvp` into name and
/// version. Names contain dashes too: the version starts at the first dash
/// after which a valid semver version follows.
pub fn store_path(path: &str) -> Option<(&str, Version)> {
    let stem = path.strip_prefix("plugins/")?.strip_suffix(".mvp")?;
    stem.match_indices('-').find_map(|(i, _)| {
        let (name, version) = (&stem[..i], &stem[i + 1..]);
        Version::parse(version).ok().filter(|_| !name.is_empty()).map(|v| (name, v))
    })
}

/// The plugin a user means: `counter` and `counter-plugin` both name the
/// folder `counter-plugin`.
pub fn plugin_name(user: &str) -> String {
    if user.ends_with("-plugin") {
        user.into()
    } else {
        alloc::format!("{user}-plugin")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }
    fn r(s: &str) -> VersionReq {
        VersionReq::parse(s).unwrap()
    }

    #[test]
    fn picks_the_highest_version_in_range() {
        let (v1, v15, v2) = (v("1.0.0"), v("1.5.0"), v("2.0.0"));
        let offers = [
            Offer { plugin: "a", interface: "counter", version: &v1, table_size: 16 },
            Offer { plugin: "b", interface: "counter", version: &v15, table_size: 16 },
            Offer { plugin: "c", interface: "counter", version: &v2, table_size: 16 },
        ];
        let range = r("^1.0");
        assert_eq!(resolve(&[Need { interface: "counter", range: &range, table_size: 16 }], &offers), Ok(vec![1]));
        let wide = r(">=1.0.0, <3.0.0");
        assert_eq!(resolve(&[Need { interface: "counter", range: &wide, table_size: 8 }], &offers), Ok(vec![2]));
    }

    #[test]
    fn every_unmet_requirement_is_listed() {
        let v1 = v("1.0.0");
        let offers = [Offer { plugin: "counter-plugin", interface: "counter", version: &v1, table_size: 16 }];
        let (r2, rx) = (r("^2"), r("^1"));
        let needs = [
            Need { interface: "counter", range: &r2, table_size: 16 },
            Need { interface: "nonexistent", range: &rx, table_size: 8 },
        ];
        let unmet = resolve(&needs, &offers).unwrap_err();
        assert_eq!(unmet.len(), 2);
        assert_eq!(unmet[0].found, ["counter 1.0.0 from counter-plugin"]);
        assert!(unmet[1].found.is_empty());
        assert_eq!(unmet[1].to_string(), "`nonexistent ^1` (nothing loaded provides it)");
    }

    #[test]
    fn a_table_smaller_than_the_consumer_was_built_against_is_refused_with_both_sizes() {
        let (v12, v13) = (v("1.2.0"), v("1.3.0"));
        let range = r("^1.2");
        // cpuhp 1.2 with the table 1.3 grew (a plugin built against 1.3's
        // type but asking for ^1.2 only).
        let need = [Need { interface: "cpuhp", range: &range, table_size: 208 }];
        let old = [Offer { plugin: "cpuhp-plugin", interface: "cpuhp", version: &v12, table_size: 200 }];
        let unmet = resolve(&need, &old).unwrap_err();
        assert_eq!(unmet.len(), 1);
        let text = unmet[0].to_string();
        assert!(text.contains("cpuhp 1.2.0 from cpuhp-plugin") && text.contains("200 bytes"), "{text}");
        assert!(text.contains("built against 208"), "{text}");
        // A larger table than needed is fine; of two fitting, the higher wins.
        let both =
            [old[0].clone(), Offer { plugin: "cpuhp-plugin", interface: "cpuhp", version: &v13, table_size: 216 }];
        assert_eq!(resolve(&need, &both), Ok(vec![1]));
        let small_need = [Need { interface: "cpuhp", range: &range, table_size: 200 }];
        assert_eq!(resolve(&small_need, &old), Ok(vec![0]));
    }

    #[test]
    fn store_paths_split_at_the_version() {
        assert_eq!(store_path("plugins/counter-plugin-1.0.0.mvp"), Some(("counter-plugin", v("1.0.0"))));
        assert_eq!(store_path("plugins/a-b-2.1.0-rc.1.mvp"), Some(("a-b", v("2.1.0-rc.1"))));
        assert_eq!(store_path("plugins/bad-truncated.mvp"), None);
        assert_eq!(store_path("image.txt"), None);
        assert_eq!(store_path("plugins/-1.0.0.mvp"), None);
        assert_eq!(plugin_name("counter"), "counter-plugin");
        assert_eq!(plugin_name("cpuhp-plugin"), "cpuhp-plugin");
    }

    #[test]
    fn replacement_must_keep_consumers_in_range() {
        let range = r(">=1.0.0, <3.0.0");
        let uses = [Use { consumer: "consumer-plugin", interface: "counter", range: &range, table_size: 16 }];
        let (v2, v3) = (v("2.0.0"), v("3.0.0"));
        assert_eq!(check_replacement(&uses, &[("counter", &v2, 16)]), Ok(()));
        let broken = check_replacement(&uses, &[("counter", &v3, 16)]).unwrap_err();
        assert_eq!((broken[0].offered.as_deref(), broken[0].sizes), (Some("3.0.0"), None));
        let gone = check_replacement(&uses, &[("other", &v2, 16)]).unwrap_err();
        assert_eq!(gone[0].offered, None);
        assert!(gone[0].to_string().contains("does not provide"));
        let shrunk = check_replacement(&uses, &[("counter", &v2, 8)]).unwrap_err();
        assert_eq!(shrunk[0].sizes, Some((8, 16)));
        assert_eq!(
            shrunk[0].to_string(),
            "consumer-plugin needs `counter >=1.0.0, <3.0.0` built against a 16-byte table but the new version \
             2.0.0 has 8 bytes"
        );
    }
}
