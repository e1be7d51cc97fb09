//! OMOP CDM tables to events: births to year and month, concepts mapped through `concept`, death
//! and observation periods, values kept, and unreadable rows counted with file, column and row.

use carecast_training::ingest::omop::read_omop;

#[test]
fn omop_tables_become_events() {
    let dir = std::env::temp_dir().join(format!("carecast-omop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write(
        "person.csv",
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n1,8532,1940,3,12\n2,8507,1955,,\n3,8532,,,\n",
    );
    write(
        "observation_period.csv",
        "person_id,observation_period_start_date,observation_period_end_date\n1,2015-01-01,2022-12-31\n2,2016-06-01,2021-05-31\n",
    );
    write(
        "condition_occurrence.csv",
        "person_id,condition_concept_id,condition_start_date,condition_start_datetime\n1,4182210,2019-04-02,\n1,320128,2016-01-10,2016-01-10 09:30:00\n2,320128,not-a-date,\n",
    );
    write(
        "measurement.csv",
        "person_id,measurement_concept_id,measurement_date,value_as_number\n1,3004249,2019-04-02,152\n1,3004249,2020-01-15,n/a\n",
    );
    write("drug_exposure.csv", "person_id,drug_concept_id,drug_exposure_start_date\n1,1308216,2016-02-01\n");
    write("death.csv", "person_id,death_date\n2,2021-05-31\n");
    write(
        "concept.csv",
        "concept_id,vocabulary_id,concept_code\n4182210,SNOMED,52448006\n320128,SNOMED,38341003\n3004249,LOINC,8480-6\n",
    );

    let (store, report) = read_omop(&dir).unwrap();
    assert_eq!(store.subjects, [1, 2, 3]);
    let codes = |i: usize| {
        store.patient(i).iter().map(|e| (e.time, store.code(e.code).to_string(), e.value)).collect::<Vec<_>>()
    };
    let t = |s: &str| carecast_training::ingest::omop::parse_time(s).unwrap();

    let p1 = codes(0);
    assert!(p1.iter().any(|e| e.0 == t("1940-03-01") && e.1 == "MEDS_BIRTH"), "birth held to year and month");
    assert!(p1.iter().any(|e| e.1 == "GENDER//F"));
    assert!(
        p1.iter().any(|e| e.0 == t("2019-04-02") && e.1 == "SNOMED//52448006"),
        "dementia condition mapped via concept"
    );
    assert!(
        p1.iter().any(|e| e.0 == t("2016-01-10 09:30:00") && e.1 == "SNOMED//38341003"),
        "datetime preferred to date"
    );
    assert!(p1.iter().any(|e| e.1 == "LOINC//8480-6" && e.2 == 152.0));
    assert!(p1.iter().any(|e| e.1 == "LOINC//8480-6" && e.2.is_nan()), "a non-numeric value keeps the event");
    assert!(p1.iter().any(|e| e.1 == "DRUG//1308216"), "unmapped concept keeps its table and id");
    assert!(p1.iter().any(|e| e.1 == "OBSERVATION_PERIOD//END" && e.0 == t("2022-12-31")));
    let p2 = codes(1);
    assert!(p2.iter().any(|e| e.1 == "MEDS_DEATH" && e.0 == t("2021-05-31")));
    assert!(p2.iter().any(|e| e.1 == "MEDS_BIRTH" && e.0 == t("1955-01-01")), "missing month reads as January");

    assert_eq!(report.dropped["condition_occurrence.csv: condition_start_date missing or not a date"], 1);
    assert_eq!(report.first_row["condition_occurrence.csv: condition_start_date missing or not a date"], 3);
    assert_eq!(report.dropped["measurement.csv: value_as_number not a number (event kept without it)"], 1);
    assert_eq!(report.dropped["person.csv: year_of_birth missing or invalid (person kept without birth)"], 1);

    // The guard applies to OMOP files too.
    write("person.csv", "person_id,year_of_birth,given_name\n1,1940,x\n");
    assert!(read_omop(&dir).unwrap_err().to_string().contains("given_name"));
    std::fs::remove_dir_all(&dir).unwrap();
}
