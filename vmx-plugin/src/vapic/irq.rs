//! Interrupt acceptance, priority and EOI of the virtual APIC (SDM vol. 3A
//! "Interrupt Acceptance for Fixed Interrupts", "Task and Processor
//! Priorities", "Signaling Interrupt Servicing Completion").
//!
//! The VMM's injection loop: [`Lapic::pending`] names the vector to inject
//! (if the guest can take an interrupt), [`Lapic::ack`] records that it was
//! injected, and the guest's EOI retires it.

use super::lapic::{Effect, Lapic};
use super::regs::*;

impl Lapic {
    /// Whether the APIC is software-enabled (SVR bit 8).
    pub fn enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    pub fn irr(&self) -> &VectorSet {
        &self.irr
    }

    pub fn isr(&self) -> &VectorSet {
        &self.isr
    }

    pub fn tmr(&self) -> &VectorSet {
        &self.tmr
    }

    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    /// Accepts a fixed, edge-triggered interrupt. Returns whether it is now
    /// in the IRR: vectors 0-15 are refused and logged in the ESR (receive
    /// illegal vector), and a software-disabled APIC accepts no fixed
    /// interrupts (SDM "Software Enabling/Disabling"). A vector already in
    /// the IRR stays there once: edge interrupts coalesce.
    pub fn accept(&mut self, vector: u8) -> bool {
        self.accept_as(vector, false)
    }

    /// As [`Lapic::accept`] for a level-triggered interrupt: sets the TMR
    /// bit, so that its EOI reports `level` in [`Effect::EoiDone`].
    pub fn accept_level(&mut self, vector: u8) -> bool {
        self.accept_as(vector, true)
    }

    fn accept_as(&mut self, vector: u8, level: bool) -> bool {
        if !self.enabled() {
            return false;
        }
        if vector < FIRST_LEGAL_VECTOR {
            self.record_error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        self.irr.insert(vector);
        // The TMR records the trigger mode of the latest acceptance (SDM
        // "Interrupt Acceptance for Fixed Interrupts").
        if level {
            self.tmr.insert(vector);
        } else {
            self.tmr.remove(vector);
        }
        true
    }

    /// The processor priority (SDM "Processor Priority Register"): the
    /// class is the higher of the TPR's and the highest in-service
    /// vector's; the subclass is the TPR's only if the TPR's class wins.
    pub fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// The vector to inject next: the highest requested one, if its
    /// priority class is above the PPR's. Subclasses never block (SDM:
    /// only bits 7:4 are compared). None while software-disabled.
    pub fn pending(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let vector = self.irr.highest()?;
        (vector >> 4 > self.ppr() >> 4).then_some(vector)
    }

    /// Records that `vector` was injected: IRR to ISR, as the processor's
    /// interrupt acknowledge does. Returns false (and changes nothing) if
    /// `vector` was not requested.
    pub fn ack(&mut self, vector: u8) -> bool {
        if !self.irr.contains(vector) {
            return false;
        }
        self.irr.remove(vector);
        self.isr.insert(vector);
        true
    }

    /// An EOI retires the highest in-service vector, whatever vector the
    /// handler served: EOIs nest like the handlers (SDM "End-of-Interrupt
    /// (EOI) Register"). An EOI with nothing in service does nothing.
    pub(super) fn eoi(&mut self) -> Effect {
        match self.isr.highest() {
            Some(vector) => {
                self.isr.remove(vector);
                Effect::EoiDone { vector, level: self.tmr.contains(vector) }
            }
            None => Effect::None,
        }
    }

    /// Logs `bits` for the next ESR latch and signals the error LVT unless
    /// masked. An error vector below 16 is itself a receive error, logged
    /// without signalling again (the error cannot be delivered anyway).
    pub(super) fn record_error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let lvt = self.lvts[Lvt::Error as usize];
        if lvt & LVT_MASKED != 0 {
            return;
        }
        let vector = lvt as u8;
        if vector < FIRST_LEGAL_VECTOR {
            self.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR;
        } else {
            self.irr.insert(vector);
            self.tmr.remove(vector);
        }
    }
}
