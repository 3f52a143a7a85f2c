"""ScalingPolicy: the model (:mod:`.models`), the loader with located errors (:mod:`.loader`),
JSON Schema export, importers from HPA/NIMService/KEDA (:mod:`.importers`) and the linter
(:mod:`.lint`)."""
