//! A two-way table between the symbolic names and numbers of a Linux ABI
//! enumeration (errno values, signals).

pub struct NameTable(pub &'static [(&'static str, i32)]);

impl NameTable {
    /// The first name listed for `number` (aliases come after the canonical names).
    pub fn name(&self, number: i32) -> Option<&'static str> {
        self.0.iter().find(|&&(_, value)| value == number).map(|&(name, _)| name)
    }

    /// The number of `name`, aliases included.
    pub fn number(&self, name: &str) -> Option<i32> {
        self.0.iter().find(|&&(candidate, _)| candidate == name).map(|&(_, value)| value)
    }
}
