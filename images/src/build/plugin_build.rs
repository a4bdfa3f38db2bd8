//! Building every plugin variant into the store that each image's initrd
//! carries under `plugins/`.
//!
//! Plugin crates are the workspace members in `plugins/tests/<name>/` (test
//! plugins) and in top-level `<name>-plugin/` folders; a plugin's name is
//! its folder name. A crate with cargo features `v1`, `v2`, ... is built
//! once per such feature, a crate without them once. One test crate,
//! `bad-plugin`, lists its variants under `package.metadata.modvisor.variants`
//! instead and names each variant itself.
//!
//! Per variant: cargo builds a PIC staticlib, rust-lld links it into a
//! shared object exporting only the descriptor (once with debug info, kept
//! as `images/out/plugins/<name>-<version>.so` for GDB, once without), and
//! the stripped one is signed as `images/out/plugins/<name>-<version>.mvp`,
//! name and version read from its metadata note. Then the broken variants
//! of `plugin_elf` are made from counter-plugin 1.0.0, and the signed
//! manifest (`plugins::manifest`) that lists every variant by its hash.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use ed25519_compact::KeyPair;
use loader_core::plugin::store::file_hash;

use super::plugin_elf::{self, Mutation};
use super::shared::{
    cargo, is_stale, load_layout, made_from_other, mtime, record_stamp, stamp, target_root, toolchain_tool,
    write_if_changed, KERNEL_TARGET,
};
use super::{signing, Error, Result};
use crate::{out_dir, shown, workspace_root};

/// The plugin the broken store files are made from.
pub const MUTATION_BASE: (&str, &str) = ("counter-plugin", "1.0.0");

/// The store's folder inside the initrd.
pub const STORE_DIR: &str = "plugins";

/// A store file whose manifest hash is not its own (the refusal test).
pub const BAD_HASH_FILE: &str = "bad-hash-plugin-1.0.0.mvp";

/// The manifest's key among the store files (and its name in `images/out/plugins/`).
const MANIFEST_KEY: &str = "manifest.mvm";

/// One plugin crate and how to build it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginCrate {
    pub package: String,
    /// The folder name: the plugin's name, unless `self_named`.
    pub folder: String,
    /// One build per entry: `None` builds without features.
    pub variants: Vec<Option<String>>,
    /// Variants listed in the manifest name themselves (`bad-plugin`).
    pub self_named: bool,
}

impl PluginCrate {
    /// A file-name-safe key for one variant's intermediate files.
    fn variant_key(&self, feature: Option<&str>) -> String {
        match feature {
            Some(f) => format!("{}+{f}", self.package),
            None => self.package.clone(),
        }
    }
}

/// A file in the store: its path inside the initrd and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreFile {
    pub path: String,
    pub bytes: Vec<u8>,
    /// Name and version from the metadata note; `None` for broken files.
    pub plugin: Option<(String, String)>,
}

/// Whether a workspace member in `relative` (to the workspace root) is a
/// plugin crate.
pub fn is_plugin_folder(relative: &Path) -> bool {
    let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        ["plugins", "tests", _] => true,
        [top] => top.ends_with("-plugin"),
        _ => false,
    }
}

/// `v` followed by a version number (`v1`, `v12`).
pub fn is_version_feature(name: &str) -> bool {
    name.strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The builds of a crate: one per listed variant if the manifest lists
/// any, else one per version feature (in version order), else one.
pub fn variants(features: &[&str], listed: Option<Vec<String>>) -> Vec<Option<String>> {
    if let Some(listed) = listed {
        return listed.into_iter().map(Some).collect();
    }
    let mut versions: Vec<&str> = features.iter().copied().filter(|f| is_version_feature(f)).collect();
    versions.sort_by_key(|f| f[1..].parse::<u64>().unwrap_or(u64::MAX));
    if versions.is_empty() {
        vec![None]
    } else {
        versions.into_iter().map(|f| Some(f.to_string())).collect()
    }
}

/// The plugin crates in `cargo metadata --no-deps` output.
pub fn plugin_crates(metadata: &str, root: &Path) -> Result<Vec<PluginCrate>, String> {
    let json: Value = serde_json::from_str(metadata).map_err(|e| format!("cargo metadata: {e}"))?;
    let packages = json["packages"].as_array().ok_or("cargo metadata has no `packages`")?;
    let mut crates = Vec::new();
    for p in packages {
        let package = p["name"].as_str().ok_or("a package without a name")?;
        let manifest = Path::new(p["manifest_path"].as_str().ok_or("a package without a manifest")?);
        let dir = manifest.parent().unwrap_or(manifest);
        let Ok(relative) = dir.strip_prefix(root) else { continue };
        if !is_plugin_folder(relative) {
            continue;
        }
        let features: Vec<&str> =
            p["features"].as_object().map(|f| f.keys().map(|k| k.as_str()).collect()).unwrap_or_default();
        let listed = match &p["metadata"]["modvisor"]["variants"] {
            Value::Null => None,
            Value::Array(v) => Some(
                v.iter()
                    .map(|f| match f.as_str() {
                        Some(f) if features.contains(&f) => Ok(f.to_string()),
                        _ => Err(format!("{package}: variant {f} is not one of its features")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => return Err(format!("{package}: package.metadata.modvisor.variants is not a list")),
        };
        crates.push(PluginCrate {
            package: package.to_string(),
            folder: dir.file_name().and_then(|f| f.to_str()).unwrap_or(package).to_string(),
            self_named: listed.is_some(),
            variants: variants(&features, listed),
        });
    }
    crates.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(crates)
}

/// Where cargo builds plugins: apart from the loader, whose build the
/// plugins' RUSTFLAGS would otherwise invalidate.
fn target_dir() -> PathBuf {
    target_root().join("plugins")
}

/// The staticlib cargo leaves for `package`.
fn archive(package: &str) -> PathBuf {
    target_dir().join(KERNEL_TARGET).join("release").join(format!("lib{}.a", package.replace('-', "_")))
}

/// Where the unstripped, GDB-ready copy of a plugin is kept.
pub fn debug_object(store_path: &str) -> PathBuf {
    let file = Path::new(store_path).file_name().map(Path::new).unwrap_or(Path::new(store_path));
    out_dir().join("plugins").join(file.with_extension("so"))
}

/// Exports only the descriptor; everything else stays local, so
/// `--gc-sections` keeps just what the descriptor reaches.
pub fn version_script() -> String {
    format!("{{ global: {}; local: *; }};\n", plugins::DESCRIPTOR_SYMBOL)
}

/// rust-lld's arguments for linking one plugin.
pub fn link_args(archive: &Path, output: &Path, version_script: &Path, strip: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-flavor", "gnu", "-shared", "-z", "norelro", "--hash-style=sysv", "--gc-sections"]
        .map(OsString::from)
        .to_vec();
    // The store's copy carries no symbols at all (the loader reads only
    // the dynamic ones); GDB takes them from the unstripped `.so`.
    if strip {
        args.push("--strip-all".into());
    }
    let mut script = OsString::from("--version-script=");
    script.push(version_script);
    args.extend([script, "-o".into(), output.into(), "--whole-archive".into(), archive.into()]);
    args
}

/// The toolchain's own rust-lld.
fn rust_lld() -> Result<PathBuf> {
    toolchain_tool("rust-lld", "the toolchain ships it (rustup)")
}

fn run_tool(command: &mut Command, what: &str) -> Result<()> {
    let status = command.status().map_err(|e| Error::io(format!("starting {what}"), e))?;
    if !status.success() {
        return Err(Error::Tool { command: what.to_string(), detail: format!("{status} (its errors are above)") });
    }
    Ok(())
}

fn discover() -> Result<Vec<PluginCrate>> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| Error::io("starting cargo metadata", e))?;
    if !out.status.success() {
        return Err(Error::Tool {
            command: "cargo metadata".into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    plugin_crates(&String::from_utf8_lossy(&out.stdout), workspace_root()).map_err(Error::Recipe)
}

/// A built variant: name, version and the stripped ELF, by store file name.
type Bodies = BTreeMap<String, (String, String, Vec<u8>)>;

/// Where one build puts its files, and what links them.
struct Linking {
    lld: PathBuf,
    link_dir: PathBuf,
    script: PathBuf,
}

/// Builds, links and signs every plugin variant, then the broken files;
/// returns the store in path order.
pub fn build_plugins() -> Result<Vec<StoreFile>> {
    let crates = discover()?;
    let lld = rust_lld()?;
    let key = signing::signing_key()?;
    let dir = out_dir().join("plugins");
    let link_dir = dir.join("link");
    fs::create_dir_all(&link_dir).map_err(|e| Error::io(format!("creating {}", link_dir.display()), e))?;
    let script = link_dir.join("plugin.ver");
    write_if_changed(&script, version_script().as_bytes())?;
    let linking = Linking { lld, link_dir, script };

    let total: usize = crates.iter().map(|c| c.variants.len()).sum();
    // Store file name -> (name, version, stripped ELF).
    let mut bodies = Bodies::new();
    let mut written = Vec::new();
    let mut n = 0;
    for krate in &crates {
        for feature in &krate.variants {
            n += 1;
            let shown_feature = feature.as_deref().map(|f| format!(" +{f}")).unwrap_or_default();
            println!("plugins: [{n}/{total}] {}{shown_feature}", krate.package);
            build_variant(krate, feature.as_deref(), &linking, &mut bodies, &mut written)?;
        }
    }
    let store = store_files(&bodies, &key)?;
    for (name, file) in &store {
        let path = dir.join(name);
        if write_if_changed(&path, &file.bytes)? {
            written.push(path);
        }
    }
    if !written.is_empty() {
        let names: Vec<String> = written.iter().map(|p| shown(p)).collect();
        println!("build: {}", names.join(" "));
    }
    Ok(store.into_values().collect())
}

/// Builds and links one variant, keeps its debug object (pushed to
/// `written` when rewritten) and adds its stripped ELF to `bodies`.
fn build_variant(
    krate: &PluginCrate,
    feature: Option<&str>,
    linking: &Linking,
    bodies: &mut Bodies,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let shown_feature = feature.map(|f| format!(" +{f}")).unwrap_or_default();
    let mut cargo_build = Command::new(cargo());
    cargo_build
        .args(["build", "--quiet", "--release", "--target", KERNEL_TARGET, "-p", &krate.package])
        .args(feature.iter().flat_map(|f| ["--features", f]))
        .env("CARGO_TARGET_DIR", target_dir())
        .env("RUSTFLAGS", "-C relocation-model=pic")
        .current_dir(workspace_root());
    run_tool(&mut cargo_build, &format!("cargo build -p {}{shown_feature}", krate.package))?;

    let archive = archive(&krate.package);
    let key_name = krate.variant_key(feature);
    let full = linking.link_dir.join(format!("{key_name}.so"));
    let stripped = linking.link_dir.join(format!("{key_name}.stripped.so"));
    // Cargo hard-links the variant's own artifact to `archive`: the
    // stamp names which artifact each output was linked from.
    let from = stamp(&archive).ok_or_else(|| {
        Error::Environment(format!("cargo built {} but {} is missing", krate.package, archive.display()))
    })?;
    for (output, strip) in [(&full, false), (&stripped, true)] {
        if made_from_other(output, &from) {
            run_tool(
                Command::new(&linking.lld).args(link_args(&archive, output, &linking.script, strip)),
                &format!("rust-lld for {key_name}"),
            )?;
            record_stamp(output, &from)?;
        }
    }

    let body = fs::read(&stripped).map_err(|e| Error::io(format!("reading {}", stripped.display()), e))?;
    let meta = plugin_elf::metadata(&body).map_err(|e| Error::Recipe(format!("{}: {e}", shown(&stripped))))?;
    if meta.abi != plugins::ABI_FINGERPRINT {
        return Err(Error::Recipe(format!(
            "{}: ABI fingerprint differs from the SDK the runner was built with",
            shown(&stripped)
        )));
    }
    if !krate.self_named && meta.name != krate.folder {
        return Err(Error::Recipe(format!(
            "{}: the plugin calls itself `{}`, but a plugin is named after its folder `{}`",
            krate.package, meta.name, krate.folder
        )));
    }
    let store_name = format!("{}-{}.mvp", meta.name, meta.version);
    if bodies.contains_key(&store_name) {
        return Err(Error::Recipe(format!("two variants build {store_name}; give each its own version")));
    }
    let debug = debug_object(&store_name);
    if is_stale(mtime(&debug), &mtime(&full).into_iter().collect::<Vec<_>>()) {
        let full_bytes = fs::read(&full).map_err(|e| Error::io(format!("reading {}", full.display()), e))?;
        if load_layout(&full_bytes) != load_layout(&body) {
            return Err(Error::Recipe(format!("{key_name}: stripping moved its segments; GDB symbols would be off")));
        }
        fs::write(&debug, full_bytes).map_err(|e| Error::io(format!("writing {}", debug.display()), e))?;
        written.push(debug);
    }
    bodies.insert(store_name, (meta.name.to_string(), meta.version.to_string(), body));
    Ok(())
}

/// The store: the broken files made from [`MUTATION_BASE`], and every
/// variant signed, keyed by file name so the store comes out in path order.
fn store_files(bodies: &Bodies, key: &KeyPair) -> Result<BTreeMap<String, StoreFile>> {
    let base_name = format!("{}-{}.mvp", MUTATION_BASE.0, MUTATION_BASE.1);
    let (_, _, base) = bodies.get(&base_name).ok_or_else(|| {
        Error::Recipe(format!("the broken store files are made from {base_name}, which no plugin variant built"))
    })?;
    let mut store: BTreeMap<String, StoreFile> = BTreeMap::new();
    let mut add = |name: &str, bytes: Vec<u8>, plugin| {
        store.insert(name.to_string(), StoreFile { path: format!("{STORE_DIR}/{name}"), bytes, plugin })
    };
    for m in Mutation::ALL {
        let bytes = m.apply(base, key).map_err(|e| Error::Recipe(format!("making {}: {e}", m.file_name())))?;
        add(m.file_name(), bytes, None);
    }
    for (file, (name, version, body)) in bodies {
        add(file, signing::sign(body, key), Some((name.clone(), version.clone())));
    }
    // Signed as a good file, but listed with the hash of other bytes: only
    // the manifest check refuses it (and it would load as counter-plugin
    // without it, then fail on its name).
    let changed = signing::sign(base, key);
    let not_its_hash = file_hash(&[&changed[..], b"as built"].concat());
    add(BAD_HASH_FILE, changed, None);
    let hashes: Vec<(&str, [u8; plugins::manifest::HASH_LEN], u32)> = store
        .iter()
        .filter(|(_, f)| f.plugin.is_some())
        .map(|(name, f)| {
            let needs =
                bodies.get(name).and_then(|(_, _, body)| plugin_elf::metadata(body).ok()).map_or(0, |m| m.needs);
            (name.as_str(), file_hash(&f.bytes), needs)
        })
        .chain([(BAD_HASH_FILE, not_its_hash, 0)])
        .collect();
    let listed: Vec<_> =
        hashes.iter().map(|(name, hash, needs)| plugins::manifest::Entry { name, hash, needs: *needs }).collect();
    let manifest = signing::manifest(&listed, key)?;
    store.insert(
        MANIFEST_KEY.to_string(),
        StoreFile { path: plugins::manifest::PATH.to_string(), bytes: manifest, plugin: None },
    );
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_folders() {
        assert!(is_plugin_folder(Path::new("plugins/tests/counter-plugin")));
        assert!(is_plugin_folder(Path::new("cpuhp-plugin")));
        assert!(!is_plugin_folder(Path::new("loader")));
        assert!(!is_plugin_folder(Path::new("plugins")));
        assert!(!is_plugin_folder(Path::new("plugins/tests/a/b")));
        assert!(!is_plugin_folder(Path::new("x/y-plugin")));
    }

    #[test]
    fn variants_by_feature() {
        assert!(is_version_feature("v1") && is_version_feature("v12"));
        assert!(
            !is_version_feature("v")
                && !is_version_feature("v0")
                && !is_version_feature("vx")
                && !is_version_feature("debug")
        );
        let some = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        assert_eq!(variants(&["v10", "v2", "debug", "v1"], None), some(&["v1", "v2", "v10"]));
        assert_eq!(variants(&["debug"], None), [None]);
        assert_eq!(variants(&[], None), [None]);
        assert_eq!(variants(&["a", "b", "v1"], Some(vec!["b".into(), "a".into()])), some(&["b", "a"]));
    }

    #[test]
    fn crates_from_cargo_metadata() {
        let json = r#"{"packages": [
            {"name": "loader", "manifest_path": "/w/loader/Cargo.toml", "features": {}, "metadata": null},
            {"name": "counter-plugin", "manifest_path": "/w/plugins/tests/counter-plugin/Cargo.toml",
             "features": {"v2": [], "v1": []}, "metadata": null},
            {"name": "cpuhp", "manifest_path": "/w/cpuhp-plugin/Cargo.toml", "features": {}, "metadata": null},
            {"name": "bad-plugin", "manifest_path": "/w/plugins/tests/bad-plugin/Cargo.toml",
             "features": {"x": [], "y": []}, "metadata": {"modvisor": {"variants": ["y", "x"]}}}
        ]}"#;
        let crates = plugin_crates(json, Path::new("/w")).unwrap();
        let summary: Vec<(&str, &str, usize, bool)> =
            crates.iter().map(|c| (c.package.as_str(), c.folder.as_str(), c.variants.len(), c.self_named)).collect();
        assert_eq!(
            summary,
            [
                ("bad-plugin", "bad-plugin", 2, true),
                ("counter-plugin", "counter-plugin", 2, false),
                ("cpuhp", "cpuhp-plugin", 1, false)
            ]
        );
        assert_eq!(crates[0].variant_key(Some("y")), "bad-plugin+y");
        assert_eq!(crates[2].variant_key(None), "cpuhp");

        let bad = json.replace(r#"["y", "x"]"#, r#"["y", "z"]"#);
        assert!(plugin_crates(&bad, Path::new("/w")).unwrap_err().contains("variant \"z\""));
        assert!(plugin_crates("{}", Path::new("/w")).is_err());
    }

    #[test]
    fn link_command() {
        let args = link_args(Path::new("/t/libc.a"), Path::new("/o/c.so"), Path::new("/o/p.ver"), true);
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args.join(" "),
            "-flavor gnu -shared -z norelro --hash-style=sysv --gc-sections --strip-all \
             --version-script=/o/p.ver -o /o/c.so --whole-archive /t/libc.a"
        );
        assert_eq!(version_script(), "{ global: MODVISOR_PLUGIN; local: *; };\n");
    }

    #[test]
    fn debug_objects_sit_beside_the_store_files() {
        assert!(
            debug_object("plugins/counter-plugin-2.0.0.mvp").ends_with("images/out/plugins/counter-plugin-2.0.0.so")
        );
    }
}
