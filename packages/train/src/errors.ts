/** A run the trainer cannot start or go on with: bad targets for the model, a diverged loss,
 * a checkpoint that does not fit. The CLI prints its message as one line. */
export class TrainingError extends Error {
  override name = 'TrainingError';
}
