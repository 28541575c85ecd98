"""Operations tooling (local run, deployment templates). Never shipped to Lambda."""
