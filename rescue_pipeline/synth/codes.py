"""Terminology tables for rendering: drugs, histologies, primary sites, statuses, names.

Data, not logic, so a reviewer can check every code in one place. RxNorm ingredient codes are
the ones given in the brief; SNOMED CT is used only where the code is certain (363443007
ovary, 128462008 secondary malignancy, body sites); tube and peritoneum primaries fall back to
ICD-10 codes, which the site data specification allows.
"""

from __future__ import annotations

from rescue_pipeline.synth import flavours as fl

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition"
HISTOLOGY_EXT = f"{MCODE}/mcode-histology-morphology-behavior"
EVIDENCE_EXT = f"{MCODE}/mcode-cancer-disease-status-evidence-type"  # STU2 onwards
ARMS = {"A": "A: secondary cytoreductive surgery + chemotherapy", "B": "B: chemotherapy alone"}

# drug key: (RxNorm ingredient, display, dose range in mg)
DRUGS: dict[str, tuple[str, str, tuple[int, int]]] = {
    "carboplatin": ("40048", "carboplatin", (350, 750)),
    "cisplatin": ("2555", "cisplatin", (100, 140)),
    "paclitaxel": ("56946", "paclitaxel", (250, 330)),
    "gemcitabine": ("12574", "gemcitabine", (1500, 1900)),
    "doxorubicin_liposomal": ("214525", "doxorubicin liposomal", (45, 60)),
    "bevacizumab": ("253337", "bevacizumab", (900, 1200)),
    "olaparib": ("1597582", "olaparib", (300, 300)),
    "niraparib": ("1918231", "niraparib", (200, 300)),
    "rucaparib": ("1862581", "rucaparib", (600, 600)),
}
HISTOLOGY_NAMES = {
    "8461/3": "High-grade serous carcinoma",
    "8441/3": "Serous carcinoma, NOS",
    "8460/3": "Low-grade serous carcinoma",
    "8380/3": "Endometrioid adenocarcinoma, NOS",
    "8310/3": "Clear cell adenocarcinoma, NOS",
    "8480/3": "Mucinous adenocarcinoma",
    "8442/1": "Serous borderline tumor",
    "8472/1": "Mucinous borderline tumor",
    "8620/3": "Granulosa cell tumor, malignant",
    "9060/3": "Dysgerminoma",
}
PRIMARY_CODES = {  # flavour -> site -> (system, code, display)
    "a": {
        "ovary": (fl.SNOMED, "363443007", "Malignant tumor of ovary"),
        "tube": (fl.ICD10, "C57.0", "Malignant neoplasm of fallopian tube"),
        "peritoneum": (fl.ICD10, "C48.2", "Malignant neoplasm of peritoneum, unspecified"),
        "adnexa": (fl.ICD10, "C57.4", "Malignant neoplasm of uterine adnexa, unspecified"),
    },
    "b": {
        "ovary": (fl.ICD10CM, "C56.9", "Malignant neoplasm of unspecified ovary"),
        "tube": (fl.ICD10CM, "C57.00", "Malignant neoplasm of unspecified fallopian tube"),
        "peritoneum": (fl.ICD10CM, "C48.2", "Malignant neoplasm of peritoneum, unspecified"),
        "adnexa": (fl.ICD10CM, "C57.4", "Malignant neoplasm of uterine adnexa, unspecified"),
    },
    "c": {
        "ovary": (fl.ICD10, "C56", "Malignant neoplasm of ovary"),
        "tube": (fl.ICD10, "C57.0", "Malignant neoplasm of fallopian tube"),
        "peritoneum": (fl.ICD10, "C48.1", "Malignant neoplasm of specified parts of peritoneum"),
        "adnexa": (fl.ICD10, "C57.4", "Malignant neoplasm of uterine adnexa, unspecified"),
    },
}
# How else sites code the same primary (rule book §1, codes with their descendants), drawn per
# subject: ICD-10-CM header codes, ICD-10-CM child codes (the pipeline must match both to their
# root), and SNOMED CT alone (only for the ovary, the one SNOMED CT code here that is certain).
PRIMARY_HEADER_ICD10CM = {
    "ovary": ("C56", "Malignant neoplasm of ovary"),
    "tube": ("C57.0", "Malignant neoplasm of fallopian tube"),
    "peritoneum": ("C48.1", "Malignant neoplasm of specified parts of peritoneum"),
}
PRIMARY_CHILD_ICD10CM = {
    "ovary": (
        ("C56.1", "Malignant neoplasm of right ovary"),
        ("C56.2", "Malignant neoplasm of left ovary"),
        ("C56.3", "Malignant neoplasm of bilateral ovaries"),
    ),
    "tube": (
        ("C57.01", "Malignant neoplasm of right fallopian tube"),
        ("C57.02", "Malignant neoplasm of left fallopian tube"),
    ),
    "peritoneum": (("C48.2", "Malignant neoplasm of peritoneum, unspecified"),),
}
PRIMARY_SNOMED = {"ovary": ("363443007", "Malignant tumor of ovary")}
# Product-level RxNorm codes (SCD) some sites send instead of the ingredient; the pipeline reads
# them through value_sets.yaml drug_products.
DRUG_PRODUCTS: dict[str, tuple[str, str]] = {
    "carboplatin": ("597195", "carboplatin 10 MG/ML Injectable Solution"),
    "paclitaxel": ("583214", "paclitaxel 100 MG Injection"),
    "gemcitabine": ("1719003", "gemcitabine 1000 MG Injection"),
}
BODY_SITES = {
    "liver": ("10200004", "Liver structure"),
    "lung": ("39607008", "Lung structure"),
    "pleura": ("3120008", "Pleural membrane structure"),
    "peritoneum": ("15425007", "Peritoneum structure"),
}
FIGO = {
    "IIB": "C96254",
    "IIIA": "C96256",
    "IIIB": "C96257",
    "IIIC": "C96258",
    "IVA": "C96262",
    "IVB": "C96263",
}
STATUS_CODES = {  # (flavour STU) value -> (code, display)
    "stu4": {
        "ned": ("550991000124107", "Malignant neoplasm in full remission"),
        "improved": ("551001000124108", "Malignant neoplasm in partial remission"),
        "stable": ("359746009", "Patient's condition stable"),
        "worsened": ("271299001", "Patient's condition worsened"),
        "undetermined": ("709137006", "Patient condition undetermined"),
    },
    "stu3": {
        "ned": ("281900007", "No abnormality detected"),
        "improved": ("268910001", "Patient's condition improved"),
        "stable": ("359746009", "Patient's condition stable"),
        "worsened": ("271299001", "Patient's condition worsened"),
        "undetermined": ("709137006", "Patient condition undetermined"),
    },
}
RESPONSE_TO_STATUS = {
    "CR": "ned",
    "PR": "improved",
    "SD": "stable",
    "PD": "worsened",
    "NE": "undetermined",
}
NCIT_RESPONSE = {
    "CR": ("C4870", "Complete Response"),
    "PR": ("C18058", "Partial Response"),
    "SD": ("C18213", "Stable Disease"),
    "PD": ("C35571", "Progressive Disease"),
}
NAMES = {
    "a": (
        (
            "Martin",
            "Bernard",
            "Dubois",
            "Lefèvre",
            "Moreau",
            "Girard",
            "Müller",
            "Fontaine",
            "Rousseau",
            "Faure",
            "Leroy",
            "Bonnet",
        ),
        (
            "Marie",
            "Hélène",
            "Françoise",
            "Isabelle",
            "Nathalie",
            "Sylvie",
            "Céline",
            "Zoë",
            "Véronique",
            "Anne",
            "Brigitte",
            "Sandrine",
        ),
        ("Lyon", "Paris", "Grenoble"),
    ),
    "b": (
        (
            "Smith",
            "Jones",
            "Taylor",
            "Brown",
            "Williams",
            "Wilson",
            "Davies",
            "Evans",
            "O'Brien",
            "Hughes",
            "Walker",
            "Green",
        ),
        (
            "Margaret",
            "Susan",
            "Helen",
            "Sarah",
            "Elizabeth",
            "Fiona",
            "Claire",
            "Alison",
            "Joanne",
            "Gillian",
            "Ann",
            "Karen",
        ),
        ("Leeds", "York", "Bristol"),
    ),
    "c": (
        (
            "Garcia",
            "Miller",
            "Davis",
            "Rodriguez",
            "Nguyen",
            "Hernandez",
            "Lopez",
            "Anderson",
            "Jackson",
            "Harris",
            "Clark",
            "Young",
        ),
        (
            "Mary",
            "Barbara",
            "Jennifer",
            "Maria",
            "Nancy",
            "Lisa",
            "Sandra",
            "Donna",
            "Carol",
            "Michelle",
            "Deborah",
            "Laura",
        ),
        ("Boston", "Albany", "Hartford"),
    ),
}


STREETS = ("Main", "Church", "Station", "Park", "Mill", "School")
