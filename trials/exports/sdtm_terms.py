"""The SDTM mapping configuration: which domain a CRF goes to, the CDISC controlled terminology of
its items, epochs, and the trial-design parameters. Data, not code: a CRF of the library that is
mapped here gets SDTM test codes and units; a new CRF with no entry goes to QS if it is a
questionnaire (`QUESTIONNAIRES`), else to FA (findings about), so QS holds questionnaires only.

To route a new CRF: add it to `CRF_DOMAINS` (and its items to `TESTS` when CDISC has codes for
them). CRFs whose entries are interventions or events (EX, CM, MH, PR) are listed in
`INTERVENTIONS` (docs/exports.md, "Mapping").

Sources: SDTMIG v3.4; CDISC SDTM Controlled Terminology (NCI EVS), package `CT_VERSION`:
VSTESTCD (C66741), LBTESTCD (C65047), UNIT (C71620), EPOCH (C99079), NCOMPLT (C66727),
ND (C66789: NOT DONE), TSPARMCD (C66738).
"""

from __future__ import annotations

from dataclasses import dataclass

SDTMIG_VERSION = "3.4"
SDTM_VERSION = "2.0"
CT_VERSION = "2024-03-29"  # the SDTM CT package the codes below were taken from
CT_NAME = "CDISC/NCI"

# CRF code -> SDTM domain. A CRF of the library not listed goes to QS if it is a questionnaire, FA if not.
CRF_DOMAINS = {
    "DEMOG": "SC", "VITALS": "VS", "LABS": "LB",
    # Procedures and administrations: the EX/PR records come from INTERVENTIONS below; the details
    # that are neither dose nor date (premedication, reactions, harvest volumes) stay findings about them.
    "INFUSION": "FA", "FATGRAFT": "FA", "DU_INJECTION": "FA",
    # Participant-level logs: their own domains (INTERVENTIONS), no findings.
    "CONMED": "CM", "MEDHIST": "MH",
    # Clinical assessments that are not questionnaires.
    "DU_ASSESS": "FA", "CAPILLAROSCOPY": "FA", "RA_SCREEN": "FA", "SSC_SCREEN": "FA", "MRSS": "FA",
    "HAND": "FA",
}
# Questionnaires and scales (QS, per the QS supplements where one exists).
QUESTIONNAIRES = {"COCHIN", "HAQDI", "DAS28", "PAIN_VAS", "PHYS_GLOBAL", "RCS"}
# CRFs whose entries are records of an interventions/events domain (SDTMIG 3.4 §6.1, §6.2):
# EX one record per administration, CM per medication, MH per condition, PR per procedure.
INTERVENTIONS = {"INFUSION": "EX", "DU_INJECTION": "EX", "CONMED": "CM", "MEDHIST": "MH", "FATGRAFT": "PR"}
# ROUTE (C66729) of the CONMED route codes; FREQ (C71113) is the code itself (QD, BID … ONCE).
ROUTES = {
    "oral": "ORAL", "intravenous": "INTRAVENOUS", "subcutaneous": "SUBCUTANEOUS", "intramuscular": "INTRAMUSCULAR",
    "topical": "TOPICAL", "transdermal": "TRANSDERMAL", "inhalation": "RESPIRATORY (INHALATION)",
}
FREQUENCIES = {"QD", "BID", "TID", "QID", "QW", "Q2W", "QM", "PRN", "ONCE"}
# UNIT (C71620) of the CONMED dose unit codes.
DOSE_UNITS = {"mg": "mg", "ug": "ug", "g": "g", "iu": "IU", "ml": "mL", "mg_kg": "mg/kg"}
# The cell product administered (EX): route and the unit of the administered cells.
CELL_ROUTES = {"INFUSION": "INTRAVENOUS", "DU_INJECTION": "INTRALESIONAL"}
CELL_UNIT = "10^6 cells"

# Items of a routed CRF that go to another domain than the CRF's (DM variables, SU).
DM_ITEMS = {"DEMOG": {"sex": "SEX", "ethnicity": "RACE", "date_of_birth": "BRTHDTC", "age_years": "AGE"}}
# item -> (SUCAT, SUTRT, {answer: SUOCCUR}); the item's date of stopping, if any, gives SUENDTC.
SU_ITEMS = {
    "DEMOG": {
        "smoking_status": ("TOBACCO", "CIGARETTES", {"never": "N", "former": "Y", "current": "Y"}, "smoking_stop_date"),
        "alcohol_use_disorder": ("ALCOHOL", "ALCOHOL USE DISORDER", {True: "Y", False: "N"}, ""),
        "drug_abuse": ("DRUGS", "DRUG ABUSE", {True: "Y", False: "N"}, ""),
    },
}


@dataclass(frozen=True)
class TestTerm:
    testcd: str
    test: str
    unit: str = ""  # CDISC UNIT submission value of the original (= standard) unit
    specimen: str = ""  # LBSPEC
    range_high_item: str = ""  # the CRF item holding the upper limit of normal (LBORNRHI)


TESTS: dict[str, dict[str, TestTerm]] = {
    "VITALS": {
        "height_cm": TestTerm("HEIGHT", "Height", "cm"),
        "weight_kg": TestTerm("WEIGHT", "Weight", "kg"),
        "bmi": TestTerm("BMI", "Body Mass Index", "kg/m2"),
        "systolic_bp": TestTerm("SYSBP", "Systolic Blood Pressure", "mmHg"),
        "diastolic_bp": TestTerm("DIABP", "Diastolic Blood Pressure", "mmHg"),
        "heart_rate": TestTerm("PULSE", "Pulse Rate", "beats/min"),
        "temperature_c": TestTerm("TEMP", "Temperature", "C"),
    },
    "LABS": {
        "haemoglobin_g_dl": TestTerm("HGB", "Hemoglobin", "g/dL", "BLOOD"),
        "wbc_10e9_l": TestTerm("WBC", "Leukocytes", "10^9/L", "BLOOD"),
        "neutrophils_10e9_l": TestTerm("NEUT", "Neutrophils", "10^9/L", "BLOOD"),
        "lymphocytes_10e9_l": TestTerm("LYM", "Lymphocytes", "10^9/L", "BLOOD"),
        "platelets_10e9_l": TestTerm("PLAT", "Platelets", "10^9/L", "BLOOD"),
        "creatinine_umol_l": TestTerm("CREAT", "Creatinine", "umol/L", "SERUM"),
        "alt_u_l": TestTerm("ALT", "Alanine Aminotransferase", "U/L", "SERUM", range_high_item="alt_uln_u_l"),
        "ast_u_l": TestTerm("AST", "Aspartate Aminotransferase", "U/L", "SERUM", range_high_item="ast_uln_u_l"),
        "alkaline_phosphatase_u_l": TestTerm("ALP", "Alkaline Phosphatase", "U/L", "SERUM"),
        "bilirubin_umol_l": TestTerm("BILI", "Bilirubin", "umol/L", "SERUM"),
        "glucose_mmol_l": TestTerm("GLUC", "Glucose", "mmol/L", "SERUM"),
        "esr_mm_h": TestTerm("ESR", "Erythrocyte Sedimentation Rate", "mm/h", "BLOOD"),
        "crp_mg_l": TestTerm("CRP", "C Reactive Protein", "mg/L", "SERUM"),
        "fsh_iu_l": TestTerm("FSH", "Follicle Stimulating Hormone", "IU/L", "SERUM"),
    },
}
# Items that are not tests: the collection date of the CRF (--DTC) and the limits carried by a test.
COLLECTION_DATE_ITEMS = {"LABS": "sample_date"}
RANGE_ITEMS = {"LABS": {"alt_uln_u_l", "ast_uln_u_l"}}

# Visit kind -> EPOCH (C99079). Dated records outside a visit: before the first treatment SCREENING, else TREATMENT.
EPOCHS = {
    "screening": "SCREENING", "baseline": "BASELINE", "treatment": "TREATMENT", "follow_up": "FOLLOW-UP",
    "end_of_study": "FOLLOW-UP",
}
# Missing-data codes of the CRF engine -> --REASND text (--STAT is "NOT DONE" for every code).
NOT_DONE_REASONS = {"not_done": "NOT DONE", "unknown": "UNKNOWN", "not_applicable": "NOT APPLICABLE"}
# SEX (C66731): F, M, U, UNDIFFERENTIATED.
SEX_CODES = {"F": "F", "M": "M", "FEMALE": "F", "MALE": "M"}
# The DEMOG "ethnic origin" answer -> (RACE (C74457), ETHNIC (C66790)); one CRF item mixes both.
RACE_ETHNIC = {
    "white": ("WHITE", ""), "black": ("BLACK OR AFRICAN AMERICAN", ""), "asian": ("ASIAN", ""),
    "north_african_middle_eastern": ("OTHER", ""), "hispanic_latino": ("", "HISPANIC OR LATINO"),
    "mixed": ("MULTIPLE", ""), "other": ("OTHER", ""), "not_reported": ("NOT REPORTED", "NOT REPORTED"),
}
# Trial phase -> TPHASE (C66737)
PHASES = {
    "na": "NOT APPLICABLE", "early_1": "PHASE I TRIAL", "1": "PHASE I TRIAL", "1_2": "PHASE I/II TRIAL",
    "2": "PHASE II TRIAL", "2_3": "PHASE II/III TRIAL", "3": "PHASE III TRIAL", "4": "PHASE IV TRIAL",
}
# Masking -> TBLIND (C66735)
BLINDING = {"none": "OPEN LABEL", "single": "SINGLE BLIND", "double": "DOUBLE BLIND", "triple": "TRIPLE BLIND",
            "quadruple": "DOUBLE BLIND"}
