use glassbox::model::params::Preset;
#[test]
fn dump() {
    for p in Preset::ALL {
        let b = p.breakdown();
        println!("{}", b);
        for g in b.group_totals() { println!("  group {:?} textbook {} exact {}", g.group, g.textbook, g.exact); }
    }
}
