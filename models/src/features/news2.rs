//! NEWS2, the NHS's National Early Warning Score 2 (Royal College of Physicians, 2017), from one
//! set of observations. SpO2 uses Scale 1 (Scale 2 is for confirmed hypercapnic respiratory
//! failure and needs a clinical decision this data cannot carry).

/// One set of observations. Consciousness: `false` = Alert; `true` = new Confusion, or responds to
/// Voice or Pain, or Unresponsive (ACVPU).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observations {
    pub respiration_rate: f64,
    pub spo2: f64,
    pub on_oxygen: bool,
    pub systolic_bp: f64,
    pub pulse: f64,
    pub cvpu: bool,
    pub temperature: f64,
}

fn band(x: f64, upper_bounds: &[(f64, u8)], above: u8) -> u8 {
    upper_bounds.iter().find(|(ub, _)| x <= *ub).map_or(above, |(_, s)| *s)
}

/// The aggregate NEWS2 score (0-20) per the RCP 2017 chart.
pub fn news2(o: &Observations) -> u8 {
    let rr = band(o.respiration_rate, &[(8.0, 3), (11.0, 1), (20.0, 0), (24.0, 2)], 3);
    let spo2 = band(o.spo2, &[(91.0, 3), (93.0, 2), (95.0, 1)], 0);
    let air = if o.on_oxygen { 2 } else { 0 };
    let sbp = band(o.systolic_bp, &[(90.0, 3), (100.0, 2), (110.0, 1), (219.0, 0)], 3);
    let pulse = band(o.pulse, &[(40.0, 3), (50.0, 1), (90.0, 0), (110.0, 1), (130.0, 2)], 3);
    let consciousness = if o.cvpu { 3 } else { 0 };
    let temp = band(o.temperature, &[(35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1)], 2);
    rr + spo2 + air + sbp + pulse + consciousness + temp
}

#[cfg(test)]
mod tests {
    use super::*;

    const NORMAL: Observations = Observations {
        respiration_rate: 16.0,
        spo2: 97.0,
        on_oxygen: false,
        systolic_bp: 120.0,
        pulse: 70.0,
        cvpu: false,
        temperature: 37.0,
    };

    #[test]
    fn chart_boundaries() {
        assert_eq!(news2(&NORMAL), 0);
        let worst = Observations {
            respiration_rate: 26.0,
            spo2: 90.0,
            on_oxygen: true,
            systolic_bp: 88.0,
            pulse: 135.0,
            cvpu: true,
            temperature: 39.5,
        };
        assert_eq!(news2(&worst), 3 + 3 + 2 + 3 + 3 + 3 + 2);
        // Each parameter at the edges of its bands (RCP 2017 chart).
        let with = |f: fn(&mut Observations)| {
            let mut o = NORMAL;
            f(&mut o);
            news2(&o)
        };
        assert_eq!(with(|o| o.respiration_rate = 8.0), 3);
        assert_eq!(with(|o| o.respiration_rate = 9.0), 1);
        assert_eq!(with(|o| o.respiration_rate = 21.0), 2);
        assert_eq!(with(|o| o.respiration_rate = 25.0), 3);
        assert_eq!(with(|o| o.spo2 = 92.0), 2);
        assert_eq!(with(|o| o.spo2 = 94.0), 1);
        assert_eq!(with(|o| o.systolic_bp = 91.0), 2);
        assert_eq!(with(|o| o.systolic_bp = 101.0), 1);
        assert_eq!(with(|o| o.systolic_bp = 220.0), 3);
        assert_eq!(with(|o| o.pulse = 40.0), 3);
        assert_eq!(with(|o| o.pulse = 41.0), 1);
        assert_eq!(with(|o| o.pulse = 91.0), 1);
        assert_eq!(with(|o| o.pulse = 111.0), 2);
        assert_eq!(with(|o| o.pulse = 131.0), 3);
        assert_eq!(with(|o| o.temperature = 35.0), 3);
        assert_eq!(with(|o| o.temperature = 35.1), 1);
        assert_eq!(with(|o| o.temperature = 38.1), 1);
        assert_eq!(with(|o| o.temperature = 39.1), 2);
    }
}
