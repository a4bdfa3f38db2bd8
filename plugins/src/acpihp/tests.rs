//! The driver against a model of QEMU's block (hw/acpi/cpu.c and
//! hw/acpi/cpu_hotplug.c as the spec describes them).

use super::*;
use std::vec::Vec;

const BASE: u16 = 0x0cd8;

#[derive(Clone, Copy, Default)]
struct Dev {
    present: bool,
    inserting: bool,
    removing: bool,
    arch_id: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Legacy,
    Modern,
    /// Nothing decodes the ports: reads float to all ones.
    Absent,
}

struct Model {
    mode: Mode,
    devs: Vec<Dev>,
    selector: u32,
    command: u8,
    ost_event: u32,
    /// (selector, event, status) per _OST status write.
    osts: Vec<(u32, u32, u32)>,
    /// Accesses outside the block.
    stray: usize,
}

impl Model {
    /// `boot` CPUs present of `max`; APIC id = 2 * index, to tell ids from
    /// selectors.
    fn new(boot: usize, max: usize) -> Model {
        let devs = (0..max).map(|i| Dev { present: i < boot, arch_id: 2 * i as u64, ..Dev::default() }).collect();
        Model { mode: Mode::Legacy, devs, selector: 0, command: 0, ost_event: 0, osts: Vec::new(), stray: 0 }
    }

    /// `device_add`: present, with an insert event (QEMU then raises GPE.2).
    fn plug(&mut self, i: usize) {
        self.devs[i].present = true;
        self.devs[i].inserting = true;
    }

    /// `device_del`: a remove event; refused in legacy mode, as QEMU does.
    fn unplug_request(&mut self, i: usize) -> bool {
        if self.mode != Mode::Modern {
            return false;
        }
        self.devs[i].removing = true;
        true
    }

    fn cur(&mut self) -> Option<&mut Dev> {
        self.devs.get_mut(self.selector as usize)
    }

    fn offset(&mut self, port: u16) -> Option<u16> {
        match port.checked_sub(BASE) {
            Some(o) if o < BLOCK_LEN => Some(o),
            _ => {
                self.stray += 1;
                None
            }
        }
    }

    fn legacy_byte(&self, o: u16) -> u8 {
        (0..8).filter(|b| self.devs.get(o as usize * 8 + b).is_some_and(|d| d.present)).fold(0, |v, b| v | 1 << b)
    }
}

impl PortIo for &mut Model {
    fn read8(&mut self, port: u16) -> u8 {
        let Some(o) = self.offset(port) else { return 0xff };
        match self.mode {
            Mode::Absent => 0xff,
            Mode::Legacy => self.legacy_byte(o),
            Mode::Modern => match (o, self.cur()) {
                (reg::FLAGS, Some(d)) => (d.present as u8) | (d.inserting as u8) << 1 | (d.removing as u8) << 2,
                _ => 0,
            },
        }
    }

    fn read32(&mut self, port: u16) -> u32 {
        let Some(o) = self.offset(port) else { return !0 };
        match self.mode {
            Mode::Absent => !0,
            Mode::Legacy => (0..4).fold(0, |v, i| v | (self.legacy_byte(o + i) as u32) << (8 * i)),
            Mode::Modern => {
                let (command, selector) = (self.command, self.selector);
                let Some(d) = self.cur() else { return 0 };
                match (o, command) {
                    (reg::DATA, command::NEXT_WITH_EVENT) => selector,
                    (reg::DATA, command::CPU_ID) => d.arch_id as u32,
                    (reg::DATA2, command::CPU_ID) => (d.arch_id >> 32) as u32,
                    _ => 0,
                }
            }
        }
    }

    fn write8(&mut self, port: u16, value: u8) {
        let Some(o) = self.offset(port) else { return };
        match self.mode {
            Mode::Absent => {}
            // hw/acpi/cpu_hotplug.c: a 0 at offset 0 switches to modern.
            Mode::Legacy => {
                if o == 0 && value == 0 {
                    self.mode = Mode::Modern;
                }
            }
            Mode::Modern => match o {
                reg::COMMAND if (self.selector as usize) < self.devs.len() => {
                    self.command = value;
                    if value == command::NEXT_WITH_EVENT {
                        let n = self.devs.len() as u32;
                        if let Some(s) = (0..n)
                            .map(|k| (self.selector + k) % n)
                            .find(|&s| self.devs[s as usize].inserting || self.devs[s as usize].removing)
                        {
                            self.selector = s;
                        }
                    }
                }
                reg::FLAGS => {
                    let first = self.selector == 0;
                    let Some(d) = self.cur() else { return };
                    if value & control::CLEAR_INSERT != 0 {
                        d.inserting = false;
                    } else if value & control::CLEAR_REMOVE != 0 {
                        d.removing = false;
                    } else if value & control::EJECT != 0 && d.present && !first {
                        *d = Dev { arch_id: d.arch_id, ..Dev::default() };
                    }
                }
                _ => {}
            },
        }
    }

    fn write32(&mut self, port: u16, value: u32) {
        let Some(o) = self.offset(port) else { return };
        match self.mode {
            // The legacy region takes one byte at a time: QEMU splits.
            Mode::Legacy | Mode::Absent => (0..4).for_each(|i| self.write8(port + i, (value >> (8 * i)) as u8)),
            Mode::Modern => match o {
                reg::SELECTOR => self.selector = value,
                reg::DATA if (self.selector as usize) < self.devs.len() => match self.command {
                    command::OST_EVENT => self.ost_event = value,
                    command::OST_STATUS => self.osts.push((self.selector, self.ost_event, value)),
                    _ => {}
                },
                _ => {}
            },
        }
    }
}

fn driver(m: &mut Model) -> CpuHotplug<&mut Model> {
    CpuHotplug::modern(m, BASE).unwrap()
}

#[test]
fn switches_from_legacy_to_modern_once() {
    let mut m = Model::new(2, 4);
    driver(&mut m);
    assert_eq!(m.mode, Mode::Modern);
    // Again (a second user, or after a reset keeps the mode): still fine.
    driver(&mut m);
    assert_eq!(m.stray, 0);
}

#[test]
fn an_absent_block_is_refused() {
    let mut m = Model::new(1, 1);
    m.mode = Mode::Absent;
    assert_eq!(CpuHotplug::modern(&mut m, BASE).err(), Some(Error::NotModern));
}

#[test]
fn a_block_stuck_in_legacy_mode_is_refused() {
    // A legacy-only block ignores the switch: the bitmap still reads.
    struct LegacyOnly;
    impl PortIo for LegacyOnly {
        fn read8(&mut self, _: u16) -> u8 {
            1
        }
        fn read32(&mut self, _: u16) -> u32 {
            1
        }
        fn write8(&mut self, _: u16, _: u8) {}
        fn write32(&mut self, _: u16, _: u32) {}
    }
    assert_eq!(CpuHotplug::modern(LegacyOnly, BASE).err(), Some(Error::NotModern));
}

#[test]
fn no_event_means_none_and_changes_nothing() {
    let mut m = Model::new(2, 4);
    let mut hp = driver(&mut m);
    assert_eq!(hp.next_event(), None);
    assert_eq!(hp.next_event(), None);
    assert!(m.osts.is_empty());
}

#[test]
fn inserted_cpus_are_reported_until_acknowledged() {
    let mut m = Model::new(2, 4);
    driver(&mut m);
    m.plug(3);
    m.plug(2);
    let mut hp = driver(&mut m);
    let first = hp.next_event().unwrap();
    assert_eq!(first, Event { selector: 2, kind: EventKind::Insert, apic_id: 4 });
    // Not acknowledged yet: the same one again.
    assert_eq!(hp.next_event(), Some(first));
    hp.ost(first.selector, Ost::insert(ost_status::SUCCESS));
    hp.ack(&first);
    let second = hp.next_event().unwrap();
    assert_eq!(second, Event { selector: 3, kind: EventKind::Insert, apic_id: 6 });
    hp.ost(3, Ost::insert(ost_status::DRIVER_LOAD_FAILURE));
    hp.ack(&second);
    assert_eq!(hp.next_event(), None);
    assert!(hp.is_enabled(2) && hp.is_enabled(3));
    assert_eq!(m.osts, [(2, 0x01, 0), (3, 0x01, 0x81)]);
    assert_eq!(m.stray, 0);
}

#[test]
fn removal_then_eject_unplugs_the_cpu() {
    let mut m = Model::new(2, 4);
    driver(&mut m);
    m.plug(2);
    m.devs[2].inserting = false;
    assert!(m.unplug_request(2));
    let mut hp = driver(&mut m);
    let e = hp.next_event().unwrap();
    assert_eq!(e, Event { selector: 2, kind: EventKind::Remove, apic_id: 4 });
    hp.ack(&e);
    hp.eject(2);
    hp.ost(2, Ost::EJECTED);
    assert!(!hp.is_enabled(2));
    assert_eq!(hp.next_event(), None);
    assert_eq!(m.osts, [(2, 0x103, 0)]);
}

#[test]
fn a_refused_eject_leaves_the_cpu_in() {
    let mut m = Model::new(2, 4);
    driver(&mut m);
    assert!(m.unplug_request(1));
    let mut hp = driver(&mut m);
    let e = hp.next_event().unwrap();
    assert_eq!(e.kind, EventKind::Remove);
    hp.ost(e.selector, Ost::eject_refused(ost_status::DEVICE_BUSY));
    hp.ack(&e);
    assert!(hp.is_enabled(1));
    assert_eq!(m.osts, [(1, 0x03, 0x82)]);
}

#[test]
fn insert_comes_before_remove_of_the_same_cpu() {
    // device_add and device_del before the guest looked: both pending.
    let mut m = Model::new(1, 2);
    driver(&mut m);
    m.plug(1);
    assert!(m.unplug_request(1));
    let mut hp = driver(&mut m);
    let e = hp.next_event().unwrap();
    assert_eq!(e.kind, EventKind::Insert);
    hp.ack(&e);
    let e = hp.next_event().unwrap();
    assert_eq!((e.selector, e.kind), (1, EventKind::Remove));
    hp.ack(&e);
    assert_eq!(hp.next_event(), None);
}

#[test]
fn the_boot_cpu_and_empty_slots_are_not_ejected() {
    let mut m = Model::new(2, 4);
    let mut hp = driver(&mut m);
    hp.eject(0);
    hp.eject(3);
    assert!(hp.is_enabled(0));
    assert!(!hp.is_enabled(3));
}

#[test]
fn device_del_is_refused_before_the_switch() {
    let mut m = Model::new(2, 4);
    assert!(!m.unplug_request(1));
    driver(&mut m);
    assert!(m.unplug_request(1));
}

#[test]
fn slots_counts_possible_cpus() {
    for max in [1, 2, 4, 7] {
        let mut m = Model::new(1, max);
        assert_eq!(driver(&mut m).slots(), max as u32);
        assert_eq!(m.selector, 0);
    }
}

#[test]
fn large_arch_ids_use_both_halves() {
    let mut m = Model::new(1, 2);
    m.devs[1].arch_id = 0x1_0000_0005;
    assert_eq!(driver(&mut m).arch_id(1), 0x1_0000_0005);
}

#[test]
fn gpe0_halves() {
    // pc: 4 bytes at 0xafe0; q35: 16 bytes at 0x620 (ICH9 PMBASE + 0x20).
    let pc = Gpe0 { port: 0xafe0, len: 4 };
    assert_eq!(pc.count(), 16);
    assert_eq!(pc.status(GPE_BIT), Some((0xafe0, 0x04)));
    assert_eq!(pc.enable(GPE_BIT), Some((0xafe2, 0x04)));
    assert_eq!(pc.enable(9), Some((0xafe3, 0x02)));
    assert_eq!(pc.status(16), None);
    let q35 = Gpe0 { port: 0x620, len: 16 };
    assert_eq!(q35.enable(GPE_BIT), Some((0x628, 0x04)));
    assert_eq!(q35.status(63), Some((0x627, 0x80)));
    assert_eq!(q35.enable(64), None);
}

#[test]
fn the_block_is_found_in_aml() {
    let region = |base: &[u8], len: &[u8]| {
        let mut aml = std::vec![0x10, 0x20, b'P', b'R', b'S', b'X', 0x5b, 0x80, b'P', b'R', b'S', b'T', 0x01];
        aml.extend_from_slice(base);
        aml.extend_from_slice(len);
        aml.extend_from_slice(&[0x5b, 0x81]);
        aml
    };
    assert_eq!(find_in_dsdt(&region(&[0x0b, 0xd8, 0x0c], &[0x0a, 0x0c])), Some(0x0cd8));
    assert_eq!(find_in_dsdt(&region(&[0x0b, 0x00, 0xaf], &[0x0a, 0x0c])), Some(0xaf00));
    assert_eq!(find_in_dsdt(&region(&[0x0c, 0x00, 0xaf, 0, 0], &[0x0a, 0x20])), Some(0xaf00));
    // Too short for the modern block, past the I/O space, truncated,
    // another region, no region.
    assert_eq!(find_in_dsdt(&region(&[0x0b, 0xd8, 0x0c], &[0x0a, 0x04])), None);
    assert_eq!(find_in_dsdt(&region(&[0x0c, 0x00, 0x00, 1, 0], &[0x0a, 0x0c])), None);
    assert_eq!(find_in_dsdt(&region(&[0x0b, 0xd8], &[])), None);
    assert_eq!(find_in_dsdt(&[0x5b, 0x80, b'P', b'R', b'S', b'X', 0x01, 0x0b, 0xd8, 0x0c, 0x0a, 0x0c]), None);
    assert_eq!(find_in_dsdt(&[]), None);
}
