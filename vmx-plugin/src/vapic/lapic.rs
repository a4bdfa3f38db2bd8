//! One vCPU's local APIC in x2APIC mode: the register file and the MSR
//! accesses the VMM forwards from RDMSR/WRMSR exits. Interrupt acceptance,
//! priority and EOI are in `irq.rs`.

use super::icr::{Ipi, DELIVERY_STATUS};
use super::regs::*;
use super::timer::{Clock, Timer};
use super::Fault;

/// What the VMM must do after a successful WRMSR, beyond resuming the
/// guest. Whatever the effect, the VMM re-checks [`Lapic::pending`] before
/// the next VM entry: a write (TPR, EOI, SELF IPI) may unblock or add an
/// interrupt without the VMM having anything else to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Deliver this IPI to [`crate::vapic::destinations`] of it.
    SendIpi(Ipi),
    /// Re-arm the host timer for [`Lapic::next_timer_deadline`].
    TimerChanged,
    /// An EOI retired `vector` from the ISR; `level` if it was accepted
    /// level-triggered (TMR set), for an I/O APIC to clear its remote IRR.
    EoiDone {
        vector: u8,
        level: bool,
    },
}

/// The x2APIC state of one vCPU. Time-dependent registers take the host
/// TSC as `now`; every access first delivers a timer expiry due by then,
/// so the guest never sees a stale timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lapic {
    pub(super) id: u32,
    pub(super) tpr: u8,
    pub(super) svr: u32,
    pub(super) irr: VectorSet,
    pub(super) isr: VectorSet,
    pub(super) tmr: VectorSet,
    /// ESR as last latched by a write, and the errors seen since
    /// (SDM "Error Handling": a write latches, the value read is stale).
    pub(super) esr: u32,
    pub(super) esr_pending: u32,
    pub(super) icr: u64,
    /// The LVTs indexed by [`Lvt`]; the timer's is in `timer`.
    pub(super) lvts: [u32; 6],
    pub(super) timer: Timer,
}

impl Lapic {
    /// An APIC with x2APIC ID `id` in its reset state: software-disabled,
    /// every LVT masked (SDM "Local APIC State After Power-Up or Reset").
    pub fn new(id: u32, clock: Clock) -> Lapic {
        Lapic {
            id,
            tpr: 0,
            svr: SVR_RESET,
            irr: VectorSet::EMPTY,
            isr: VectorSet::EMPTY,
            tmr: VectorSet::EMPTY,
            esr: 0,
            esr_pending: 0,
            icr: 0,
            lvts: [LVT_MASKED; 6],
            timer: Timer::new(clock),
        }
    }

    /// The state an INIT leaves: as after reset, but the ID (and hence the
    /// LDR) and the mode stay (SDM "Local APIC State After an INIT Reset").
    pub fn init_reset(&mut self) {
        // The timer keeps its clock and TSC offset: they are the VMM's.
        let mut timer = self.timer;
        timer.reset();
        *self = Lapic { timer, ..Lapic::new(self.id, timer.clock()) };
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn timer(&self) -> &Timer {
        &self.timer
    }

    /// See [`Timer::set_tsc_offset`].
    pub fn set_tsc_offset(&mut self, offset: u64) {
        self.timer.set_tsc_offset(offset);
    }

    /// The host TSC to wake this vCPU's timer at, if it is armed.
    pub fn next_timer_deadline(&self) -> Option<u64> {
        self.timer.next_deadline()
    }

    /// Handles a timer expiry due by `now` (call when the host timer armed
    /// for [`Lapic::next_timer_deadline`] fires). Returns whether an
    /// interrupt was accepted; re-arm for the next deadline either way.
    pub fn expire_timer(&mut self, now: u64) -> bool {
        match self.timer.expire(now) {
            Some(vector) => self.accept(vector),
            None => false,
        }
    }

    /// RDMSR of `msr` at host TSC `now`: the value for EDX:EAX, or the
    /// #GP the guest gets.
    pub fn read_msr(&mut self, msr: u32, now: u64) -> Result<u64, Fault> {
        self.expire_timer(now);
        self.register(msr, now)
    }

    /// The value RDMSR of `msr` returns at host TSC `now`, without first
    /// delivering a timer expiry (what [`Lapic::read_msr`] does): the
    /// virtual-APIC page takes its image this way.
    pub fn register(&self, msr: u32, now: u64) -> Result<u64, Fault> {
        if msr == MSR_TSC_DEADLINE {
            return Ok(self.timer.read_deadline());
        }
        match register_access(msr) {
            None => return Err(Fault::Unknown { msr }),
            Some(Access::WriteOnly) => return Err(Fault::WriteOnly { msr }),
            Some(_) => {}
        }
        let word = |base: u32| (msr - base) as usize;
        let value: u32 = match msr {
            MSR_ID => self.id,
            MSR_VERSION => VERSION,
            MSR_TPR => self.tpr.into(),
            MSR_PPR => self.ppr().into(),
            MSR_LDR => logical_id(self.id),
            MSR_SVR => self.svr,
            MSR_ISR0..=0x817 => self.isr.word(word(MSR_ISR0)),
            MSR_TMR0..=0x81f => self.tmr.word(word(MSR_TMR0)),
            MSR_IRR0..=0x827 => self.irr.word(word(MSR_IRR0)),
            MSR_ESR => self.esr,
            MSR_ICR => return Ok(self.icr),
            MSR_LVT_TIMER => self.timer.lvt(),
            MSR_TIMER_INITIAL => self.timer.initial_count(),
            MSR_TIMER_CURRENT => self.timer.current_count(now),
            MSR_TIMER_DIVIDE => self.timer.divide_config(),
            _ => match Lvt::from_msr(msr) {
                Some(lvt) => self.lvts[lvt as usize],
                None => unreachable!("register_access lists {msr:#x}"),
            },
        };
        Ok(value.into())
    }

    /// WRMSR of `value` (EDX:EAX) to `msr` at host TSC `now`.
    pub fn write_msr(&mut self, msr: u32, value: u64, now: u64) -> Result<Effect, Fault> {
        self.expire_timer(now);
        if msr == MSR_TSC_DEADLINE {
            self.timer.write_deadline(value, now);
            return Ok(Effect::TimerChanged);
        }
        match register_access(msr) {
            None => return Err(Fault::Unknown { msr }),
            Some(Access::ReadOnly) => return Err(Fault::ReadOnly { msr }),
            Some(_) => {}
        }
        if msr == MSR_ICR {
            return self.write_icr(value);
        }
        // Every other x2APIC register is 32 bits wide: EDX is reserved.
        let reserved = Fault::Reserved { msr, value };
        let v = u32::try_from(value).map_err(|_| reserved)?;
        let check = |writable: u32| if v & !writable == 0 { Ok(()) } else { Err(reserved) };
        match msr {
            MSR_TPR => {
                check(0xff)?;
                self.tpr = v as u8;
            }
            // EOI and ESR take only 0 in x2APIC mode (SDM table "Local APIC
            // Register Address Map Supported by x2APIC").
            MSR_EOI => {
                check(0)?;
                return Ok(self.eoi());
            }
            MSR_ESR => {
                check(0)?;
                self.esr = core::mem::take(&mut self.esr_pending);
            }
            MSR_SVR => {
                check(SVR_WRITABLE)?;
                return Ok(self.write_svr(v));
            }
            MSR_SELF_IPI => {
                check(LVT_VECTOR)?;
                self.self_ipi(v as u8);
            }
            _ => return self.write_lvt_or_timer(msr, v, now),
        }
        Ok(Effect::None)
    }

    fn write_lvt_or_timer(&mut self, msr: u32, v: u32, now: u64) -> Result<Effect, Fault> {
        match msr {
            MSR_LVT_TIMER => {
                self.timer.write_lvt(v)?;
                if !self.enabled() {
                    self.timer.mask();
                }
            }
            MSR_TIMER_INITIAL => self.timer.write_initial(v, now),
            MSR_TIMER_DIVIDE => self.timer.write_divide(v, now)?,
            _ => {
                let lvt = Lvt::from_msr(msr).unwrap_or_else(|| unreachable!("register_access lists {msr:#x}"));
                if v & !(lvt.writable() | lvt.status()) != 0 {
                    return Err(Fault::Reserved { msr, value: v.into() });
                }
                // A disabled APIC keeps every LVT masked (SDM "Software
                // Enabling/Disabling"); status bits are never stored.
                let masked = if self.enabled() { 0 } else { LVT_MASKED };
                self.lvts[lvt as usize] = v & lvt.writable() | masked;
                return Ok(Effect::None);
            }
        }
        Ok(Effect::TimerChanged)
    }

    /// Disabling masks every LVT, and they stay masked after a later enable
    /// until the guest unmasks them.
    fn write_svr(&mut self, v: u32) -> Effect {
        self.svr = v;
        if self.enabled() {
            return Effect::None;
        }
        for lvt in &mut self.lvts {
            *lvt |= LVT_MASKED;
        }
        let was_masked = self.timer.masked();
        self.timer.mask();
        if was_masked {
            Effect::None
        } else {
            Effect::TimerChanged
        }
    }

    /// Stores the ICR (reads return the last value written, delivery status
    /// idle) and says what to send. A fixed IPI with a vector below 16 is
    /// an error, not sent (SDM "Error Handling", send illegal vector).
    fn write_icr(&mut self, value: u64) -> Result<Effect, Fault> {
        let ipi = Ipi::decode(value)?;
        self.icr = value & !DELIVERY_STATUS;
        if ipi.is_init_deassert() {
            return Ok(Effect::None);
        }
        if ipi.needs_legal_vector() && ipi.vector < FIRST_LEGAL_VECTOR {
            self.record_error(ESR_SEND_ILLEGAL_VECTOR);
            return Ok(Effect::None);
        }
        Ok(Effect::SendIpi(ipi))
    }

    /// The SELF IPI register: a fixed, edge-triggered IPI to this APIC
    /// only, which needs no other vCPU and so no VMM action.
    fn self_ipi(&mut self, vector: u8) {
        if vector < FIRST_LEGAL_VECTOR {
            self.record_error(ESR_SEND_ILLEGAL_VECTOR);
        } else {
            self.accept(vector);
        }
    }
}
