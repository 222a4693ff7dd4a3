//! Fixed ingredients of the demo schools: names (with the diacritics real registers have),
//! subjects, forms, notices, and a small deterministic random generator.

/// SplitMix64: tiny, deterministic across platforms and crate versions, good enough for fake data.
pub struct Rng(u64);

impl Rng {
    /// Seed from a label, so each school's data is stable.
    pub fn from_label(label: &str) -> Self {
        let mut seed = 0xcbf2_9ce4_8422_2325u64;
        for b in label.bytes() {
            seed = (seed ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }

    /// Lower-case hex string of `bytes` random bytes.
    pub fn hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", self.next_u64() as u8))
            .collect()
    }
}

/// First names: Yoruba, Igbo and Hausa names as registers write them, and a few from elsewhere.
pub const FIRST_NAMES: &[(&str, &str)] = &[
    ("Adébáyọ̀", "M"),
    ("Chiamaka", "F"),
    ("Ọláolúwa", "M"),
    ("Fúnmiláyọ̀", "F"),
    ("Chukwuemeka", "M"),
    ("Ngozi", "F"),
    ("Aminu", "M"),
    ("Zainab", "F"),
    ("Tèmítọ́pẹ́", "F"),
    ("Ifeanyi", "M"),
    ("Oluwaseun", "M"),
    ("Adaeze", "F"),
    ("Ìbùkún", "F"),
    ("Kelechi", "M"),
    ("Hauwa", "F"),
    ("Ṣẹ́gun", "M"),
    ("Chidinma", "F"),
    ("Babajide", "M"),
    ("Amarachi", "F"),
    ("Musa", "M"),
    ("Łukasz", "M"),
    ("Zoë", "F"),
    ("José", "M"),
    ("Renée", "F"),
    ("Dmitri", "M"),
    ("Ayọ̀mídé", "F"),
    ("Ọ̀lámídé", "M"),
    ("Ebere", "F"),
];

/// Family names.
pub const LAST_NAMES: &[&str] = &[
    "Okafor",
    "Adéyẹmí",
    "Ọ̀kọ̀",
    "Nwosu",
    "Balogun",
    "Ìbrahìm",
    "Bello",
    "Eze",
    "Oyèlárán",
    "Nwachukwu",
    "Ògúnlẹ̀yẹ",
    "Danjuma",
    "Afọlábí",
    "Okonkwo",
    "Abdullahi",
    "Ọlátúnjí",
    "Kowalski",
    "Müller",
    "Ezeh",
    "Ṣóyínká",
];

/// Middle names, used for some students.
pub const OTHER_NAMES: &[&str] = &[
    "Oluwadámilọ́lá",
    "Chinedu",
    "Grace",
    "Ọmọ́tọ́ṣọ̀",
    "Ikechukwu",
    "Maryam",
];

/// (code, name) of every subject the demo school teaches.
pub const SUBJECTS: &[(&str, &str)] = &[
    ("ENG", "English Language"),
    ("MTH", "Mathematics"),
    ("BSC", "Basic Science"),
    ("BTE", "Basic Technology"),
    ("SST", "Social Studies"),
    ("CVE", "Civic Education"),
    ("CMP", "Computer Studies"),
    ("FRE", "French"),
    ("AGR", "Agricultural Science"),
    ("CCA", "Cultural and Creative Arts"),
];
