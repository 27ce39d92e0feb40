import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { CompileMasterStack } from './compile-master-stack';
import { loadConfig } from './config';

const app = new App();
const config = loadConfig((key) => app.node.tryGetContext(key));

new CompileMasterStack(app, 'CompileMasters', {
  config,
  description: 'Elastic Puppet compile masters: NLB, EFS, Auto Scaling group with lifecycle hooks, lifecycle controller',
});

// Every finding must be fixed or acknowledged where it arises; an unacknowledged one fails synth.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
