"""Facts about the public datasets the catalog reads: how many classes each official release has,
and where its publisher ships it (for the message that says how to get one that is missing)."""

# Classes per dataset; a split file that lists another number is only noted (synthetic copies and
# partial copies of the official layouts have fewer classes).
NUM_CLASSES = {"ucf101": 101, "hmdb51": 51, "diving48": 48, "kinetics400": 400}
# Where each public dataset comes from (its publisher's page).
DATASET_SOURCES = {
    "ucf101": "https://www.crcv.ucf.edu/data/UCF101.php (UCF101.rar + UCF101TrainTestSplits-RecognitionTask.zip)",
    "hmdb51": (
        "https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/ (hmdb51_org.rar + "
        "test_train_splits.rar)"
    ),
    "diving48": "http://www.svcl.ucsd.edu/projects/resound/dataset.html (Diving48_rgb.tar.gz + the V2 annotations)",
    "kinetics400": "https://github.com/cvdfoundation/kinetics-dataset (videos + annotation CSVs)",
}
